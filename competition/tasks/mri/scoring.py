"""Per-patient overlap and surface distances, and their means (METRICS.md section 3).

Each case is scored on its whole (H, W, S) volume with the spacing of its reference's
NIfTI header. Empty masks: both empty give Dice 1 and distances 0; exactly one empty gives
Dice 0 and infinite distances, reported as such per case. A mean over cases cannot hold an
infinity, and dropping the case would flatter the submission (the known fault of NaN-
skipping means), so in means an infinite distance counts as the volume's diagonal in mm:
the largest distance two of its voxels can have.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from competition.metrics.surface import surface_scores
from competition.tasks.base import Direction, ItemMetric, ScoreResult, positions_of, usage_masks

# The item values, in this order: the leaderboard's shown metrics and mean_of_ranks' criteria.
ITEM_METRICS = (
    ItemMetric("dice", "Dice", Direction.MAXIMIZE),
    ItemMetric("hd", "HD (mm)", Direction.MINIMIZE),
    ItemMetric("hd95", "HD95 (mm)", Direction.MINIMIZE),
    ItemMetric("assd", "ASSD (mm)", Direction.MINIMIZE),
)
DISTANCES = ("hd", "hd95", "assd")
INF_RULE = ("a case where exactly one of truth and prediction is empty has infinite "
            "distances; in means over cases an infinite distance counts as the volume's "
            "diagonal in mm")
EMPTY_RULE = "both empty: Dice 1, distances 0; exactly one empty: Dice 0, distances inf"


def case_row(case: str, usage: str | None, truth: np.ndarray, pred: np.ndarray,
             spacing: tuple[float, ...], diagonal_mm: float) -> dict[str, Any]:
    s = surface_scores(truth, pred, spacing)
    empty_truth, empty_pred = not truth.any(), not pred.any()
    return {
        "case": case, "usage": usage, "dice": s.dice, "hd": _shown(s.hausdorff),
        "hd95": _shown(s.hd95), "assd": _shown(s.assd), "diagonal_mm": diagonal_mm,
        "empty": ("both" if empty_truth and empty_pred else "truth" if empty_truth else
                  "prediction" if empty_pred else ""),
        "voxels_true": int(truth.sum()), "voxels_predicted": int(pred.sum()),
    }


def _shown(distance: float) -> float | str:
    """An infinite distance is reported as the string "inf" (JSON has no infinity, and a
    null would read as missing)."""
    return "inf" if math.isinf(distance) else distance


def for_mean(row: dict[str, Any], metric: str) -> float:
    """A case's value as it enters means: an infinite distance is the diagonal.

    Examples
    --------
    >>> row = {"case": "c", "hd": "inf", "dice": 0.0, "diagonal_mm": 12.5}
    >>> for_mean(row, "hd"), for_mean(row, "dice")
    (12.5, 0.0)
    """
    value = float(row[metric])
    if math.isinf(value):
        return float(row["diagonal_mm"])
    if math.isnan(value):  # cannot happen (surface_scores never gives NaN): never dropped
        raise ValueError(f"case {row['case']}: {metric} is NaN")
    return value


def means(rows: list[dict[str, Any]]) -> dict[str, float]:
    table = np.array([[for_mean(r, m.name) for m in ITEM_METRICS] for r in rows],
                     dtype=np.float64).reshape(-1, 4)
    return {f"mean_{m.name}": float(table[:, k].mean()) if len(rows) else float("nan")
            for k, m in enumerate(ITEM_METRICS)}


def summarize(rows: list[dict[str, Any]], task: str, metric: str, item_kind: str,
              item_key: str) -> ScoreResult:
    dice = np.array([r["dice"] for r in rows], dtype=np.float64)
    masks = usage_masks([r["usage"] for r in rows])
    public = private = None
    if masks is not None:
        public = float(dice[masks[0]].mean()) if masks[0].any() else None
        private = float(dice[masks[1]].mean()) if masks[1].any() else None
    fields: dict[str, Any] = {
        "n_cases": len(rows),
        **means(rows),
        "median_dice": float(np.median(dice)) if len(rows) else float("nan"),
        "n_infinite_distances": sum(math.isinf(float(r["hd"])) for r in rows),
        "definitions": {
            "score": "mean over cases (patients) of the per-case Dice",
            "hd95": "95th percentile of the pooled surface distances both ways (MedPy)",
            "assd": "mean of the pooled surface distances both ways",
            "spacing": "each case's voxel sizes from its reference NIfTI header (mm)",
            "empty_masks": EMPTY_RULE,
            "infinite_distances": INF_RULE,
        },
    }
    return ScoreResult(task=task, metric=metric, score=float(dice.mean()), public=public,
                       private=private, fields=fields, items=rows, item_kind=item_kind,
                       item_key=item_key, higher_is_better=True,
                       notes=[INF_RULE],
                       subset=lambda usage: summarize(
                           [rows[k] for k in positions_of([r["usage"] for r in rows], usage)],
                           task, metric, item_kind, item_key))
