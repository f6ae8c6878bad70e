"""Test-time augmentation: predictions averaged over flips and 90-degree rotations (pure).

A fully convolutional network's output should turn with its input; where it does not quite,
averaging its (inverted) outputs over the dihedral group's transforms evens out the errors.
`n` = 1 (none), 2 (identity, horizontal flip), 4 (both flips and the half turn) or 8 (all
flips and quarter turns). Each transform costs one more prediction.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# (quarter turns, then a horizontal flip): ordered so that the first n form a group
TRANSFORMS = ((0, False), (0, True), (2, True), (2, False),
              (1, False), (1, True), (3, False), (3, True))
CHOICES = (1, 2, 4, 8)


def forward(image: np.ndarray, turns: int, flip: bool) -> np.ndarray:
    out = np.rot90(image, turns, axes=(0, 1))
    return np.ascontiguousarray(out[:, ::-1] if flip else out)


def inverse(maps: np.ndarray, turns: int, flip: bool) -> np.ndarray:
    out = maps[:, ::-1] if flip else maps
    return np.ascontiguousarray(np.rot90(out, -turns, axes=(0, 1)))


def averaged(predict: Callable[[np.ndarray], np.ndarray], image: np.ndarray,
             n: int = 8) -> np.ndarray:
    """The mean of `predict` (an (H, W[, C]) image to (H, W, K) maps) over `n` transforms."""
    if n not in CHOICES:
        raise ValueError(f"tta: {n} transforms; choose one of {CHOICES}")
    total: np.ndarray | None = None
    for turns, flip in TRANSFORMS[:n]:
        out = inverse(np.asarray(predict(forward(image, turns, flip)), np.float32), turns, flip)
        total = out if total is None else total + out
    assert total is not None
    result: np.ndarray = total / n
    return result
