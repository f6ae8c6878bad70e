"""What every task offers: read a solution, validate a submission, score it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

ITEM_ID_KEYS = {"image": "ImageId", "slice": "slice", "specimen": "specimen"}


@dataclass
class ScoreResult:
    """An official score, its public/private split and the task's detail fields.

    `public`/`private` are None where the solution has no Usage split. `items` holds one row per
    image/slice/specimen, with its `usage`; `item_kind` names the rows.
    """

    task: str
    score: float
    public: float | None
    private: float | None
    fields: dict[str, Any]
    items: list[dict[str, Any]]
    item_kind: str
    higher_is_better: bool
    metric: str = ""
    notes: list[str] = field(default_factory=list)

    def item_id(self, item: dict[str, Any]) -> Any:
        """The id of an item row: its ImageId, slice number or specimen name."""
        return item[ITEM_ID_KEYS[self.item_kind]]

    def as_json(self, per_item: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "task": self.task,
            "metric": self.metric,
            "score": self.score,
            "public": self.public,
            "private": self.private,
            "higher_is_better": self.higher_is_better,
            **self.fields,
        }
        if per_item:
            out[f"per_{self.item_kind}"] = self.items
        return jsonable(out)


def jsonable(value: Any) -> Any:
    """Plain JSON types; NaN and infinities become None (strict JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def usage_masks(usages: list[str | None]) -> tuple[np.ndarray, np.ndarray] | None:
    """Boolean masks of public and private items, or None when there is no split."""
    if not usages or any(u is None for u in usages):
        return None
    u = np.array(usages)
    return u == "Public", u == "Private"


class Task(Protocol):
    name: str
    higher_is_better: bool
    submission_suffix: str

    def load_solution(self, path: Path) -> Any: ...

    def validate(self, data: bytes, solution: Any) -> Any: ...

    def describe(self, parsed: Any) -> str: ...

    def item_values(self, item: dict[str, Any]) -> list[float]: ...

    def finish(self, means: np.ndarray) -> np.ndarray: ...

    def score(self, data: bytes, solution: Any, reference: Any = None,
              only: str | None = None) -> ScoreResult: ...


def aggregate(task: Task, values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """A task's score of items with `values` (n_items, k), optionally under resampling
    `weights` (..., n_items) that sum to n_items: every task's score is a function of the
    (weighted) mean of its item values, which makes the bootstrap one matrix product."""
    values = np.asarray(values, dtype=np.float64)
    if weights is None:
        return task.finish(values.mean(axis=0))
    return task.finish(np.asarray(weights, dtype=np.float64) @ values / values.shape[0])
