"""Nuclei instance segmentation, scored as Kaggle's DSB 2018."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from competition.errors import SubmissionError
from competition.formats import nuclei_csv
from competition.metrics import nuclei as metric
from competition.tasks.base import ScoreResult, usage_masks

Solution = dict[str, nuclei_csv.NucleiImage]


class NucleiTask:
    name = "nuclei"
    higher_is_better = True
    submission_suffix = ".csv"
    metric = "DSB 2018 mean precision over IoU thresholds 0.50:0.05:0.95 (IoU > t, strict)"

    def load_solution(self, path: Path) -> Solution:
        try:
            return nuclei_csv.read_solution(Path(path).read_bytes())
        except SubmissionError as e:
            raise e.located(str(path)) from None

    def shapes(self, solution: Solution) -> dict[str, tuple[int, int]]:
        """The public facts a submission is checked against: test ids and image sizes."""
        return {image_id: image.shape for image_id, image in solution.items()}

    def validate(self, data: bytes, solution: Solution) -> dict[str, nuclei_csv.NucleiImage]:
        images = nuclei_csv.read_submission(data, self.shapes(solution))
        for image_id, image in images.items():
            image.labels_flat(f"ImageId {image_id}")  # overlap check
        return images

    @staticmethod
    def item_values(item: dict) -> list[float]:
        return [item["score"]]

    @staticmethod
    def finish(means: np.ndarray) -> np.ndarray:
        """Score from the items' mean values (..., 1): the mean image score."""
        return means[..., 0]

    def describe(self, images: dict[str, nuclei_csv.NucleiImage]) -> str:
        n_objects = sum(image.n_objects for image in images.values())
        return f"{len(images)} images, {n_objects} objects"

    def score(self, data: bytes, solution: Solution, reference=None,
              only: str | None = None) -> ScoreResult:
        """`only` ("Public"/"Private"): the whole file is validated, the images of that usage
        scored (detail metrics of one split)."""
        submission = nuclei_csv.read_submission(data, self.shapes(solution))
        matches, items = [], []
        for image_id, truth in solution.items():
            if only is not None and truth.usage != only:
                continue
            pred = submission[image_id]
            p, n_p = pred.labels_flat(f"ImageId {image_id}")
            # Truth as its object pixels only (solutions were checked when prepared).
            t_pixels, t_owner = truth.pixels()
            p_at = p[t_pixels]
            hit = p_at > 0
            m = metric.match_pairs(t_owner[hit], p_at[hit],
                                   np.bincount(t_owner, minlength=truth.n_objects + 1),
                                   np.bincount(p, minlength=n_p + 1))
            matches.append(m)
            items.append({
                "ImageId": image_id,
                "usage": truth.usage,
                "score": m.score,
                "n_true": m.n_true,
                "n_pred": m.n_pred,
                "tp": m.tp.tolist(),
            })
        return summarize(matches, items)


def summarize(matches: list[metric.ImageMatch], items: list[dict]) -> ScoreResult:
    masks = usage_masks([it["usage"] for it in items])
    public = private = None
    if masks is not None:
        public = _subset_score(matches, masks[0])
        private = _subset_score(matches, masks[1])
    per_threshold = metric.mean_precision_per_threshold(matches)
    return ScoreResult(
        task="nuclei",
        metric=NucleiTask.metric,
        score=metric.mean_score(matches),
        public=public,
        private=private,
        fields={
            "n_images": len(matches),
            "per_threshold": {f"{t:.2f}": float(v) for t, v in
                              zip(metric.THRESHOLDS, per_threshold, strict=True)},
            "empty_image_rule": "no true and no predicted objects scores 1.0",
        },
        items=items,
        item_kind="image",
        higher_is_better=True,
    )


def _subset_score(matches, mask: np.ndarray) -> float | None:
    chosen = [m for m, keep in zip(matches, mask, strict=True) if keep]
    return metric.mean_score(chosen) if chosen else None
