"""Nuclei instance segmentation, scored as Kaggle's DSB 2018."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from competition.errors import CompetitionError, SubmissionError
from competition.formats import nuclei_csv
from competition.formats.files import SubmissionFile
from competition.formats.text import read_csv_rows
from competition.metrics import nuclei as metric
from competition.tasks.base import (
    Direction,
    Maps,
    ScoreResult,
    Source,
    Task,
    Validation,
    positions_of,
    usage_masks,
)
from competition.tasks.nuclei import naive, pictures, prepare, synthetic
from competition.tasks.nuclei.data import Instances, NucleiData, NucleiFiles
from competition.tasks.nuclei.postprocess import boundary_target, instances_from_probabilities


class Solution(dict[str, nuclei_csv.NucleiImage]):
    """The hidden images by ImageId, with each image's type (`appearance.TYPES`) where the
    solution has a types sidecar (`<solution>_types.csv`, written by the preparer)."""

    types: dict[str, str]

    def __init__(self, images: dict[str, nuclei_csv.NucleiImage],
                 types: dict[str, str] | None = None):
        super().__init__(images)
        self.types = types or {}


def types_path(solution_path: Path) -> Path:
    """Where a solution's per-image types are: `solution.csv` -> `solution_types.csv`
    (`stage1_solution.csv` -> `stage1_solution_types.csv`)."""
    path = Path(solution_path)
    return path.with_name(path.stem + prepare.TYPES_SUFFIX)


def read_types(path: Path, ids: set[str]) -> dict[str, str]:
    """`ImageId,Type` rows for exactly the solution's images."""
    try:
        rows = read_csv_rows(path.read_bytes(), prepare.TYPES_HEADER)
    except SubmissionError as e:
        raise CompetitionError(str(e.located(str(path)))) from None
    types = {fields[0].strip(): fields[1].strip() for _, fields in rows}
    if set(types) != ids:
        odd = sorted(set(types) ^ ids)
        raise CompetitionError(f"{path}: its ImageIds differ from the solution's (first: "
                               f"{odd[0]}); prepare the competition again")
    return types


class NucleiTask(NucleiFiles,
                 Task[Solution, dict[str, nuclei_csv.NucleiImage], NucleiData, Instances]):
    name = "nuclei"
    title = "Nuclei instance segmentation"
    metric = "DSB 2018 mean precision over IoU thresholds 0.50:0.05:0.95 (IoU > t, strict)"
    metric_label = "mean AP"
    direction = Direction.MAXIMIZE
    item_kind = "image"
    item_key = "ImageId"
    submission_suffix = ".csv"
    prediction = "instances"  # {ImageId: (H, W) instance labels}
    map_channels = ("foreground", "boundary")
    postprocess_keys = ("fg_threshold", "marker_threshold", "min_size", "boundary_weight")

    def sources(self) -> dict[str, Source]:
        return {
            "dsb2018": Source(prepare.prepare, "2018 Data Science Bowl (Kaggle layout, "
                              "stage1_train with labels as CSV or mask PNGs)"),
            "demo-nuclei": Source(prepare.prepare, "synthetic nuclei in three modalities",
                                  synthetic=synthetic.write_nuclei_source,
                                  options={"test_fraction": 0.25}),
        }

    def load_solution(self, path: Path) -> Solution:
        try:
            images = nuclei_csv.read_solution(Path(path).read_bytes())
        except SubmissionError as e:
            raise e.located(str(path)) from None
        sidecar = types_path(path)
        return Solution(images, read_types(sidecar, set(images)) if sidecar.is_file() else None)

    def solution_files(self, path: Path) -> list[Path]:
        sidecar = types_path(path)
        return [Path(path), *([sidecar] if sidecar.is_file() else [])]

    def shapes(self, solution: Solution) -> dict[str, tuple[int, int]]:
        """The public facts a submission is checked against: test ids and image sizes."""
        return {image_id: image.shape for image_id, image in solution.items()}

    def usage(self, solution: Solution) -> dict[str, str | None]:
        return {image_id: image.usage for image_id, image in solution.items()}

    def validate(self, submission: SubmissionFile,
                 solution: Solution) -> dict[str, nuclei_csv.NucleiImage]:
        # The reader refuses overlapping masks from their runs, before painting any.
        return nuclei_csv.read_submission(submission.read_bytes(), self.shapes(solution))

    def item_values(self, item: dict[str, Any]) -> list[float]:
        return [item["score"]]

    def finish(self, means: np.ndarray) -> np.ndarray:
        """Score from the items' mean values (..., 1): the mean image score."""
        return means[..., 0]

    def describe(self, images: dict[str, nuclei_csv.NucleiImage]) -> str:
        n_objects = sum(image.n_objects for image in images.values())
        return f"{len(images)} images, {n_objects} objects"

    def score(self, submission: SubmissionFile, solution: Solution,
              reference: dict[str, nuclei_csv.NucleiImage] | None = None,
              only: str | None = None) -> ScoreResult:
        """`only` ("Public"/"Private"): the whole file is validated, the images of that usage
        scored (detail metrics of one split)."""
        parsed = nuclei_csv.read_submission(submission.read_bytes(), self.shapes(solution))
        types: dict[str, str] = getattr(solution, "types", {})
        matches, items = [], []
        for image_id, truth in solution.items():
            if only is not None and truth.usage != only:
                continue
            pred = parsed[image_id]
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
                **({"type": types[image_id]} if types else {}),
                "score": m.score,
                "n_true": m.n_true,
                "n_pred": m.n_pred,
                "tp": m.tp.tolist(),
            })
        return summarize(matches, items, types)

    # --- predictions and the demo ------------------------------------------------------------

    def predictions_from_maps(self, maps: Maps, config: dict[str, Any]) -> Instances:
        """Instances by marker-controlled watershed of foreground (and boundary) maps: the
        U-Nets and ensembles post-process alike."""
        return {image_id: instances_from_probabilities(
            m[..., 0].astype(np.float32),
            m[..., 1].astype(np.float32) if m.shape[-1] > 1 else None,
            config.get("fg_threshold", 0.5), config.get("marker_threshold", 0.5),
            config.get("min_size", 10), config.get("boundary_weight", 1.0))
            for image_id, m in maps.items()}

    def maps_from_predictions(self, inputs: NucleiData, predictions: Instances) -> Maps:
        """Instances as hard foreground and boundary maps (the U-Nets' two channels)."""
        return {image_id: np.stack([labels > 0, boundary_target(labels)], -1).astype(np.float32)
                for image_id, labels in predictions.items()}

    def snapshot(self, maps: Maps, validation: Validation[NucleiData],
                 config: dict[str, Any]) -> tuple[np.ndarray, float]:
        (probability,) = maps.values()
        labels = self.predictions_from_maps({"v": probability}, config)["v"]
        return (pictures.frame(validation.image, probability[..., 0], labels, validation.truth),
                metric.image_score(validation.truth, labels))

    def naive_submission(self, public: Path) -> bytes:
        inputs = self.load_inputs(public)
        return self.write_submission(inputs, naive.otsu_instances(inputs))


def per_type(items: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The mean image score and image count of each type (items carry their `type`): the
    official score is the mean over all images, whatever their types."""
    scores: dict[str, list[float]] = {}
    for item in items:
        scores.setdefault(item["type"], []).append(item["score"])
    return {t: {"score": float(np.mean(v)), "n_images": len(v)}
            for t, v in sorted(scores.items())}


def summarize(matches: list[metric.ImageMatch], items: list[dict[str, Any]],
              types: dict[str, str] | None = None) -> ScoreResult:
    masks = usage_masks([it["usage"] for it in items])
    public = private = None
    if masks is not None:
        public = _subset_score(matches, masks[0])
        private = _subset_score(matches, masks[1])
    per_threshold = metric.mean_precision_per_threshold(matches)
    return ScoreResult(
        task=NucleiTask.name,
        metric=NucleiTask.metric,
        score=metric.mean_score(matches),
        public=public,
        private=private,
        fields={
            "n_images": len(matches),
            "per_threshold": {f"{t:.2f}": float(v) for t, v in
                              zip(metric.THRESHOLDS, per_threshold, strict=True)},
            "empty_image_rule": "no true and no predicted objects scores 1.0",
            **({"per_type": per_type(items)} if types else {}),
        },
        items=items,
        item_kind=NucleiTask.item_kind,
        item_key=NucleiTask.item_key,
        higher_is_better=NucleiTask.direction.higher_is_better,
        subset=lambda usage: _split(matches, items, types, usage),
    )


def _split(matches: list[metric.ImageMatch], items: list[dict[str, Any]],
           types: dict[str, str] | None, usage: str) -> ScoreResult:
    """The images of one usage summarized alone: the images' matches are kept from the pass."""
    keep = positions_of([it["usage"] for it in items], usage)
    return summarize([matches[k] for k in keep], [items[k] for k in keep], types)


def _subset_score(matches: list[metric.ImageMatch], mask: np.ndarray) -> float | None:
    chosen = [m for m, keep in zip(matches, mask, strict=True) if keep]
    return metric.mean_score(chosen) if chosen else None
