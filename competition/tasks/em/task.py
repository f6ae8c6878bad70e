"""EM membrane segmentation, scored as ISBI 2012 (V_rand after border thinning)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from competition import rlimits
from competition.errors import SubmissionError
from competition.formats import em_tiff
from competition.formats.files import SubmissionFile
from competition.formats.text import read_csv_rows
from competition.metrics import em as metric
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
from competition.tasks.em import naive, pictures, prepare, synthetic
from competition.tasks.em.data import EmData, EmFiles


@dataclass
class EmSolution:
    labels: np.ndarray  # (slices, H, W), 255 = cell interior, 0 = membrane
    usage: list[str] | None


class EmTask(EmFiles, Task[EmSolution, np.ndarray, EmData, np.ndarray]):
    name = "em"
    title = "EM membrane segmentation"
    metric = ("ISBI 2012 foreground-restricted Rand score after border thinning (V_rand), "
              "max over thresholds 0.0:0.1:1.0 of the mean over slices")
    metric_label = "V_rand"
    direction = Direction.MAXIMIZE
    item_kind = "slice"
    item_key = "slice"
    submission_suffix = ".tif"
    prediction = "probabilities"  # (slices, H, W) cell probability, high = cell
    map_channels = ("cell",)

    def sources(self) -> dict[str, Source]:
        return {
            "isbi2012": Source(prepare.prepare, "ISBI 2012 EM stacks (train-volume.tif, "
                               "train-labels.tif, or folders of PNG slices)"),
            "demo-em": Source(prepare.prepare, "synthetic serial-section EM",
                              synthetic=synthetic.write_em_source),
        }

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

    def solution_files(self, path: Path) -> list[Path]:
        """The label stack, and the Usage sidecar beside it where there is one."""
        path = Path(path)
        sidecar = path.with_suffix(".csv")
        return [path, sidecar] if sidecar != path and sidecar.is_file() else [path]

    def usage(self, solution: EmSolution) -> dict[str, str | None]:
        usages: Sequence[str | None] = solution.usage or [None] * len(solution.labels)
        return {str(z): u for z, u in enumerate(usages)}

    def validate(self, submission: SubmissionFile, solution: EmSolution) -> np.ndarray:
        return em_tiff.read_probabilities(submission.read_bytes(), solution.labels.shape)

    def item_values(self, item: dict[str, Any]) -> list[float]:
        values: list[float] = item["v_rand_per_threshold"]
        return values

    def finish(self, means: np.ndarray) -> np.ndarray:
        """Score from the slices' mean V_rand per threshold (..., n_thresholds): the best."""
        best: np.ndarray = means.max(axis=-1)
        return best

    def describe(self, proposal: np.ndarray) -> str:
        return f"{proposal.shape[0]} slices of {proposal.shape[1]}x{proposal.shape[2]}"

    def score(self, submission: SubmissionFile, solution: EmSolution,
              reference: np.ndarray | None = None, only: str | None = None) -> ScoreResult:
        """`only` ("Public"/"Private"): the whole stack is validated, the slices of that usage
        scored (detail metrics of one split)."""
        proposal = self.validate(submission, solution)
        if only is not None:
            keep = [z for z, u in enumerate(solution.usage or []) if u == only]
            solution = EmSolution(solution.labels[keep], [only] * len(keep))
            proposal = proposal[keep]
        slices = PerSlice(solution.labels, proposal)
        # A binary proposal is only evaluated at th = 0 (Fiji's "binary proposal" option).
        thresholds = (0.0,) if all(slices.binary) else metric.THRESHOLDS
        tables = score_stack(solution.labels, proposal, thresholds)
        return summarize(tables, solution.usage, thresholds, slices,
                         list(range(len(solution.labels))))

    # --- predictions and the demo ------------------------------------------------------------

    def predictions_from_maps(self, maps: Maps, config: dict[str, Any]) -> np.ndarray:
        """The cell-probability stack (maps by slice number, (H, W) or (H, W, 1))."""
        slices = [np.asarray(maps[k], np.float32) for k in sorted(maps, key=int)]
        return np.clip(np.stack([s[..., 0] if s.ndim == 3 else s for s in slices]), 0, 1)

    def maps_from_predictions(self, inputs: EmData, predictions: np.ndarray) -> Maps:
        """The probability stack as one map per slice."""
        return {str(z): np.asarray(p, np.float32)[..., None] for z, p in enumerate(predictions)}

    def snapshot(self, maps: Maps, validation: Validation[EmData],
                 config: dict[str, Any]) -> tuple[np.ndarray, float]:
        probability = self.predictions_from_maps(maps, config)[0]
        v_rand = float(metric.score_slice(validation.truth, probability,
                                          metric.THRESHOLDS)[0].max())
        return pictures.frame(validation.image, probability, validation.truth), v_rand

    def naive_submission(self, public: Path) -> bytes:
        inputs = self.load_inputs(public)
        return self.write_submission(inputs, naive.smoothed_intensity(inputs.volume))


def score_stack(labels: np.ndarray, proposal: np.ndarray,
                thresholds: tuple[float, ...]) -> np.ndarray:
    """(3, slices, thresholds): V_rand, V_info and pixel error per slice and threshold.

    Slices are independent, so they are spread over the CPU cores. Under scoring limits each
    worker gets its share of what the scorer has left (`rlimits.shared`): the whole process
    tree stays within one memory and CPU-time budget.
    """
    n = len(labels)
    workers = min(os.cpu_count() or 1, n)
    if workers > 1 and n >= 4:
        with rlimits.shared(workers) as bounds, ProcessPoolExecutor(workers, **bounds) as pool:
            rows = list(pool.map(metric.score_slice, labels, proposal, [thresholds] * n))
    else:
        rows = [metric.score_slice(lab, prop, thresholds) for lab, prop in
                zip(labels, proposal, strict=True)]
    return np.stack(rows, axis=1)


@dataclass
class PerSlice:
    """A stack's slices and what `summarize` needs of each beyond the tables, computed once
    per slice (and threshold) however many splits are summarized from one pass."""

    labels: np.ndarray
    proposal: np.ndarray
    binary: list[bool] = field(init=False)
    _overlaps: dict[int, tuple[float, float]] = field(default_factory=dict)
    _rand_errors: dict[tuple[int, float], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.binary = [bool(np.isin(p, (0.0, 1.0)).all()) for p in self.proposal]

    def overlap(self, z: int) -> tuple[float, float]:
        """Cell-pixel IoU and Dice of slice z."""
        if z not in self._overlaps:
            self._overlaps[z] = metric.foreground_overlap(self.labels[z], self.proposal[z])
        return self._overlaps[z]

    def rand_error(self, z: int, th: float) -> float:
        """scikit-image's adapted Rand error of slice z's thinned segmentation at `th`."""
        if (z, th) not in self._rand_errors:
            self._rand_errors[z, th] = metric.adapted_rand_error(
                metric.components(self.labels[z] > th)[0],
                metric.thin_borders(self.proposal[z] > th))[0]
        return self._rand_errors[z, th]


def summarize(tables: np.ndarray, usage: list[str] | None, thresholds: tuple[float, ...],
              slices: PerSlice, positions: list[int]) -> ScoreResult:
    """`tables` (3, n, thresholds) of the slices at `positions` of `slices`; items are
    numbered 0..n-1, as `only` numbers the slices it keeps."""
    v_rand_t, v_info_t, pixel_t = tables
    v_rand, k_best = metric.best_over_thresholds(v_rand_t)
    v_info, _ = metric.best_over_thresholds(v_info_t)
    masks = usage_masks(usage or [])
    public = private = None
    if masks is not None:
        # Each subset picks its own best threshold, as the score would on that subset alone.
        if masks[0].any():
            public = metric.best_over_thresholds(v_rand_t, masks[0])[0]
        if masks[1].any():
            private = metric.best_over_thresholds(v_rand_t, masks[1])[0]
    iou, dice = zip(*(slices.overlap(z) for z in positions), strict=True)
    # The named extra, on the thinned segmentation at the best V_rand threshold.
    th = thresholds[k_best]
    extra = float(np.mean([slices.rand_error(z, th) for z in positions]))
    items = [
        {
            "slice": z,
            "usage": usage[z] if usage else None,
            "v_rand": float(v_rand_t[z, k_best]),
            "v_rand_per_threshold": v_rand_t[z].tolist(),
            "v_info": float(v_info_t[z, k_best]),
            "pixel_error": float(pixel_t[z, k_best]),
            "fg_iou": float(iou[z]),
        }
        for z in range(len(positions))
    ]
    return ScoreResult(
        task=EmTask.name,
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
        item_kind=EmTask.item_kind,
        item_key=EmTask.item_key,
        higher_is_better=EmTask.direction.higher_is_better,
        subset=lambda only: _split(tables, usage, thresholds, slices, positions, only),
    )


def _split(tables: np.ndarray, usage: list[str] | None, thresholds: tuple[float, ...],
           slices: PerSlice, positions: list[int], only: str) -> ScoreResult:
    """The slices of one usage summarized alone, from the pass's tables: what `only=usage`
    computes, as `score_slice` scores each slice and threshold independently."""
    keep = positions_of(usage or [], only)
    part = [positions[k] for k in keep]
    sub = tables[:, keep]
    if len(thresholds) > 1 and all(slices.binary[z] for z in part):
        # `only` would see a binary proposal, evaluated at th = 0 alone (the first column).
        sub, thresholds = np.ascontiguousarray(sub[:, :, :1]), thresholds[:1]
    return summarize(sub, [only] * len(keep), thresholds, slices, part)
