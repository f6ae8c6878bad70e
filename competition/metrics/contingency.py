"""Overlap counts between two label images without a dense n_true x n_pred table."""

from __future__ import annotations

import numpy as np

# Above this many cells a dense bincount table would cost more than a few MB: go sparse.
DENSE_LIMIT = 1 << 19


def relabel(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Map labels to consecutive 1..n (0 stays background); labels need not be consecutive."""
    flat = np.asarray(labels).ravel()
    if flat.size == 0:
        return flat.astype(np.int64), 0
    if flat.min() < 0:
        raise ValueError("labels must be non-negative")
    top = int(flat.max())
    if top <= 4 * flat.size + 1024:
        present = np.bincount(flat, minlength=top + 1) > 0
        present[0] = False
        lut = np.zeros(top + 1, dtype=np.int64)
        n = int(present.sum())
        lut[present] = np.arange(1, n + 1)
        return lut[flat], n
    values, inverse = np.unique(flat, return_inverse=True)
    if values[0] == 0:
        return inverse.astype(np.int64), len(values) - 1
    return inverse.astype(np.int64) + 1, len(values)


def overlaps(
    a: np.ndarray, n_a: int, b: np.ndarray, n_b: int, where: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-zero cells (i, j, count) of the contingency table of flat label arrays a and b.

    Rows and columns include label 0; `where` restricts the pixels counted.
    """
    if where is not None:
        a, b = a[where], b[where]
    key = a.astype(np.int64) * (n_b + 1) + b
    if (n_a + 1) * (n_b + 1) <= DENSE_LIMIT:
        counts = np.bincount(key, minlength=(n_a + 1) * (n_b + 1))
        cells = np.flatnonzero(counts)
        counts = counts[cells]
    else:
        unique = np.unique(key, return_counts=True)
        cells, counts = unique[0], unique[1]  # (not unpacked: mypy 1.20 fails on numpy 2.4's stub)
    return cells // (n_b + 1), cells % (n_b + 1), counts
