"""Post-processing settings chosen on training items held out of training (validation only).

The settings that turn maps into predictions (for nuclei: the watershed's foreground and
marker thresholds and the smallest object) are a task's `postprocess_keys`. An entry holds
`n` training items out before fitting (`hold_out`), predicts their maps with the trained
model, and keeps the grid point with the best mean validation score (`choose`), scored by
the task's own `snapshot` (the competition's metric on one labelled item). Duck-typed: the
task is anything with `hold_out`, `snapshot` and `postprocess_keys`, so `models` imports
nothing from the competition.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def hold_out(task: Any, train: Any, n: int, seed: int = 0) -> tuple[Any, list[Any]]:
    """Training data less `n` items drawn by the task (each a `Validation`: inputs, image,
    truth); fewer where the task has no more to give."""
    held = []
    for k in range(max(int(n), 0)):
        rest, item = task.hold_out(train, seed + 1000 + k)
        if item is None:
            break
        train = rest
        held.append(item)
    return train, held


def grid_points(keys: Sequence[str], grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of `grid`'s values for `keys` (those with values), as settings."""
    keys = [k for k in keys if grid.get(k)]
    return [dict(zip(keys, values, strict=True))
            for values in itertools.product(*(grid[k] for k in keys))]


def choose(task: Any, probabilities: Callable[[Any], dict[str, np.ndarray]],
           held: list[Any], config: dict[str, Any], grid: dict[str, list[Any]]
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The best grid point of the task's post-processing keys (others in `grid` are
    ignored) by mean score over `held`, and a report (each point's score, the config's own
    settings' score, how many items)."""
    points = grid_points(task.postprocess_keys, grid)
    if not held or points == [{}]:
        return {}, {}
    start = time.perf_counter()
    maps = [probabilities(item.inputs) for item in held]
    predicted = time.perf_counter() - start

    def mean_score(settings: dict[str, Any]) -> float:
        scores = [task.snapshot(m, item, {**config, **settings})[1]
                  for m, item in zip(maps, held, strict=True)]
        return float(np.mean(scores))

    scored = [(mean_score(p), k) for k, p in enumerate(points)]
    best_score, best = max(scored, key=lambda s: (s[0], -s[1]))
    default = mean_score({})
    # Keep the configured settings unless the grid beats them.
    chosen = points[best] if best_score > default else {}
    return chosen, {"items": len(held), "predict_seconds": round(predicted, 2),
                    "seconds": round(time.perf_counter() - start, 2),
                    "default_score": round(default, 4),
                    "best_score": round(max(best_score, default), 4),
                    "grid": [{**p, "score": round(s, 4)} for (s, _), p in
                             zip(scored, points, strict=True)]}
