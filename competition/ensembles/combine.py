"""Combining members' prediction maps (pure): mean, weighted mean, median, and greedy forward
selection with replacement (Caruana et al., 2004).

Maps are dicts of arrays by test item, whatever the task: per item an (H, W, C) probability
map, an (L, 3) array of coordinates, and so on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

from competition.errors import CompetitionError
from competition.tasks.base import Maps


def check_compatible(members: list[Maps], names: list[str]) -> None:
    """Same items with the same sizes (the last axis of image maps, channels, may differ)."""
    first = members[0]
    for maps, name in zip(members[1:], names[1:], strict=True):
        if sorted(first) != sorted(maps):
            raise CompetitionError(f"member {name} predicted other items than {names[0]}")
        for key in first:
            a, b = first[key], maps[key]
            dims = a.ndim - 1 if a.ndim >= 3 else a.ndim
            if a.ndim != b.ndim or a.shape[:dims] != b.shape[:dims]:
                raise CompetitionError(f"member {name}: {key} has shape {b.shape}, member "
                                       f"{names[0]} has {a.shape}")


def combine(members: list[Maps], method: str = "mean",
            weights: list[float] | None = None) -> Maps:
    """Item by item, the element-wise mean, weighted mean or median of members' maps
    (channels cut to the fewest any member has)."""
    if method not in ("mean", "median"):
        raise CompetitionError(f"unknown combination {method!r}")
    if weights is not None:
        if method == "median":
            raise CompetitionError("--weights apply to the mean, not the median")
        if len(weights) != len(members):
            raise CompetitionError(f"{len(weights)} weights for {len(members)} members")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise CompetitionError("weights must be non-negative and not all zero")
    w = np.asarray(weights if weights is not None else [1.0] * len(members), np.float64)
    w = w / w.sum()

    def one(arrays: list[np.ndarray]) -> np.ndarray:
        if arrays[0].ndim >= 3:
            channels = min(a.shape[-1] for a in arrays)
            arrays = [a[..., :channels] for a in arrays]
        stack = np.stack([a.astype(np.float64) for a in arrays])
        if method == "median":
            return np.median(stack, axis=0).astype(arrays[0].dtype)
        return np.tensordot(w, stack, axes=1).astype(arrays[0].dtype)

    return {k: one([m[k] for m in members]) for k in members[0]}


def greedy_selection(n_members: int, score_of: Callable[[list[int]], float], rounds: int,
                     higher_is_better: bool) -> tuple[list[int], list[float]]:
    """Forward selection with replacement: each round adds the member whose addition scores
    best (by `score_of(bag)`); stops after `rounds` or when no addition improves. Returns
    the chosen bag (member indices, repeats allowed) and the score after each round."""
    bag: list[int] = []
    trajectory: list[float] = []
    best = None
    for _ in range(rounds):
        scored = [(score_of(bag + [k]), k) for k in range(n_members)]
        value, k = (max if higher_is_better else min)(scored, key=lambda t: t[0])
        if best is not None and not (value > best if higher_is_better else value < best):
            break
        bag.append(k)
        trajectory.append(value)
        best = value
    return bag, trajectory


def bag_weights(bag: list[int], n_members: int) -> list[float]:
    counts = Counter(bag)
    return [counts.get(k, 0) / len(bag) for k in range(n_members)]
