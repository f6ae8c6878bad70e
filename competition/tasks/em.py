"""EM membrane segmentation, scored as ISBI 2012 (V_rand after border thinning)."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from competition.errors import SubmissionError
from competition.formats import em_tiff
from competition.formats.text import read_csv_rows
from competition.metrics import em as metric
from competition.tasks.base import ScoreResult, usage_masks


@dataclass
class EmSolution:
    labels: np.ndarray  # (slices, H, W), 255 = cell interior, 0 = membrane
    usage: list[str] | None


class EmTask:
    name = "em"
    higher_is_better = True
    submission_suffix = ".tif"
    metric = ("ISBI 2012 foreground-restricted Rand score after border thinning (V_rand), "
              "max over thresholds 0.0:0.1:1.0 of the mean over slices")

    def load_solution(self, path: Path) -> EmSolution:
        """`solution.tif` (labels) with an optional `solution.csv` (Slice,Usage) beside it."""
        path = Path(path)
        tif, csv = path.with_suffix(".tif"), path.with_suffix(".csv")
        try:
            labels = em_tiff.read_stack(tif.read_bytes())
        except SubmissionError as e:
            raise e.located(str(tif)) from None
        usage = None
        if csv.exists():
            try:
                rows = read_csv_rows(csv.read_bytes(), ["Slice", "Usage"])
            except SubmissionError as e:
                raise e.located(str(csv)) from None
            usage = [row[1].strip() for _, row in sorted(rows, key=lambda r: int(r[1][0]))]
            if len(usage) != len(labels) or set(usage) - {"Public", "Private"}:
                raise SubmissionError("needs one Public/Private row per slice", file=str(csv))
        return EmSolution(labels, usage)

    def validate(self, data: bytes, solution: EmSolution) -> np.ndarray:
        return em_tiff.read_probabilities(data, solution.labels.shape)

    @staticmethod
    def item_values(item: dict) -> list[float]:
        return item["v_rand_per_threshold"]

    @staticmethod
    def finish(means: np.ndarray) -> np.ndarray:
        """Score from the slices' mean V_rand per threshold (..., n_thresholds): the best."""
        return means.max(axis=-1)

    def describe(self, proposal: np.ndarray) -> str:
        return f"{proposal.shape[0]} slices of {proposal.shape[1]}x{proposal.shape[2]}"

    def score(self, data: bytes, solution: EmSolution, reference=None,
              only: str | None = None) -> ScoreResult:
        """`only` ("Public"/"Private"): the whole stack is validated, the slices of that usage
        scored (detail metrics of one split)."""
        proposal = self.validate(data, solution)
        if only is not None:
            keep = [z for z, u in enumerate(solution.usage or []) if u == only]
            solution = EmSolution(solution.labels[keep], [only] * len(keep))
            proposal = proposal[keep]
        binary = bool(np.isin(proposal, (0.0, 1.0)).all())
        # A binary proposal is only evaluated at th = 0 (Fiji's "binary proposal" option).
        thresholds = (0.0,) if binary else metric.THRESHOLDS
        tables = score_stack(solution.labels, proposal, thresholds)
        return summarize(tables, solution, proposal, thresholds)


def score_stack(labels: np.ndarray, proposal: np.ndarray, thresholds) -> np.ndarray:
    """(3, slices, thresholds): V_rand, V_info and pixel error per slice and threshold.

    Slices are independent, so they are spread over the CPU cores.
    """
    n = len(labels)
    workers = min(os.cpu_count() or 1, n)
    if workers > 1 and n >= 4:
        with ProcessPoolExecutor(workers) as pool:
            rows = list(pool.map(metric.score_slice, labels, proposal, [thresholds] * n))
    else:
        rows = [metric.score_slice(lab, prop, thresholds) for lab, prop in
                zip(labels, proposal, strict=True)]
    return np.stack(rows, axis=1)


def summarize(tables: np.ndarray, solution: EmSolution, proposal: np.ndarray,
              thresholds) -> ScoreResult:
    v_rand_t, v_info_t, pixel_t = tables
    v_rand, k_best = metric.best_over_thresholds(v_rand_t)
    v_info, _ = metric.best_over_thresholds(v_info_t)
    masks = usage_masks(solution.usage or [])
    public = private = None
    if masks is not None:
        # Each subset picks its own best threshold, as the score would on that subset alone.
        if masks[0].any():
            public = metric.best_over_thresholds(v_rand_t, masks[0])[0]
        if masks[1].any():
            private = metric.best_over_thresholds(v_rand_t, masks[1])[0]
    iou, dice = zip(*(metric.foreground_overlap(lab, prop) for lab, prop in
                      zip(solution.labels, proposal, strict=True)), strict=True)
    # The named extra, on the thinned segmentation at the best V_rand threshold.
    th = thresholds[k_best]
    extra = float(np.mean([
        metric.adapted_rand_error(metric.components(lab > th)[0],
                                  metric.thin_borders(prop > th))[0]
        for lab, prop in zip(solution.labels, proposal, strict=True)
    ]))
    items = [
        {
            "slice": z,
            "usage": solution.usage[z] if solution.usage else None,
            "v_rand": float(v_rand_t[z, k_best]),
            "v_rand_per_threshold": v_rand_t[z].tolist(),
            "v_info": float(v_info_t[z, k_best]),
            "pixel_error": float(pixel_t[z, k_best]),
            "fg_iou": float(iou[z]),
        }
        for z in range(len(solution.labels))
    ]
    return ScoreResult(
        task="em",
        metric=EmTask.metric,
        score=v_rand,
        public=public,
        private=private,
        fields={
            "v_rand": v_rand,
            "v_info": v_info,
            "pixel_error": metric.pixel_error(pixel_t),
            "best_threshold": th,
            "thresholds": list(thresholds),
            "v_rand_per_threshold": v_rand_t.mean(axis=0).tolist(),
            "fg_iou": float(np.mean(iou)),
            "fg_dice": float(np.mean(dice)),
            "adapted_rand_error": extra,
            "definitions": {
                "v_info": "max over thresholds of the mean over slices (maximised separately)",
                "pixel_error": "min over thresholds of the mean over slices of the fraction of "
                               "pixels where label > th differs from proposal > th (Fiji)",
                "fg_iou": "cell-pixel IoU of label > 0 vs proposal > 0.5, mean over slices",
                "adapted_rand_error": "scikit-image's adapted_rand_error at the best "
                                      "threshold, mean over slices; not the ISBI score",
            },
        },
        items=items,
        item_kind="slice",
        higher_is_better=True,
    )
