"""Compiled breadth-first flooding for border thinning (numba; imported on first use)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, inline="always")  # a call per pixel would double the flood's time
def _push_free_neighbours(out: np.ndarray, h: int, w: int, idx: int, lab: int,
                          queue_pixel: np.ndarray, queue_label: np.ndarray, tail: int) -> int:
    """Queue the unlabelled 4-neighbours of pixel `idx` with label `lab`; new tail."""
    r, c = idx // w, idx % w
    for dr, dc in ((-1, 0), (0, -1), (0, 1), (1, 0)):
        rr, cc = r + dr, c + dc
        if 0 <= rr < h and 0 <= cc < w and out[rr * w + cc] == 0:
            queue_pixel[tail] = rr * w + cc
            queue_label[tail] = lab
            tail += 1
    return tail


@njit(cache=True)
def flood_with_lines(labels: np.ndarray) -> np.ndarray:  # pragma: no cover (compiled)
    """Grow labelled regions (> 0) over the 0 pixels, 4-connected, first in first out.

    The same algorithm as scikit-image's watershed on a binary relief with
    `watershed_line=True`: a pixel whose already-labelled neighbours carry another label than
    the one reaching it becomes a line pixel (0), and lines do not propagate. Regions are
    seeded in raster order, which fixes the otherwise arbitrary order in which fronts that
    meet at equal distance are resolved.
    """
    h, w = labels.shape
    out = labels.copy().ravel()
    n = h * w
    queue_pixel = np.empty(4 * n + 1, np.int64)
    queue_label = np.empty(4 * n + 1, np.int32)
    tail = 0
    for idx in range(n):
        if out[idx] > 0:
            tail = _push_free_neighbours(out, h, w, idx, out[idx], queue_pixel, queue_label,
                                         tail)
    head = 0
    while head < tail:
        idx = queue_pixel[head]
        lab = queue_label[head]
        head += 1
        if out[idx] != 0:
            continue
        r, c = idx // w, idx % w
        line = False
        for dr, dc in ((-1, 0), (0, -1), (0, 1), (1, 0)):
            rr, cc = r + dr, c + dc
            if 0 <= rr < h and 0 <= cc < w:
                v = out[rr * w + cc]
                if v > 0 and v != lab:
                    line = True
                    break
        if line:
            out[idx] = -1
            continue
        out[idx] = lab
        tail = _push_free_neighbours(out, h, w, idx, lab, queue_pixel, queue_label, tail)
    for idx in range(n):
        if out[idx] < 0:
            out[idx] = 0
    return out.reshape(h, w)
