"""ISBI 2012 EM membranes: foreground-restricted Rand and information scores (METRICS.md §2).

Follows Fiji's "segmentation evaluation after border thinning" (trainableSegmentation.metrics):
truth segments are the 4-connected components of `label > th`; the proposal `proposal > th` is
split into 4-connected regions that then flood the membrane pixels (a 4-connected watershed on
the binary relief, i.e. breadth-first from the regions), leaving 1-pixel lines labelled 0.
Where two fronts meet at equal distance, which pixel becomes the line is implementation-defined
(scikit-image: its heap order; Fiji: its queue order; here: raster-order seeding); on noisy
maps this moves V_rand by about 1e-4.
Scores are restricted to true-foreground pixels, proposal label 0 counting as singletons.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from competition.metrics.contingency import overlaps, relabel

# Exactly k/10. Fiji accumulates 0.1 in floating point, so its last threshold is
# 0.9999999999999999 rather than 1.0; this only matters for pixels of value exactly 1.0.
THRESHOLDS = tuple(k / 10 for k in range(11))
_CROSS = ndimage.generate_binary_structure(2, 1)


def components(binary: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of a binary image."""
    labels, n = ndimage.label(binary, structure=_CROSS)
    return labels, n


def thin_borders(binary: np.ndarray) -> np.ndarray:
    """Proposal regions grown over the membrane with 1-pixel watershed lines (label 0).

    A slice without cell pixels is one segment covering the slice.
    """
    markers, n = components(binary)
    if n <= 1:
        return np.ones(binary.shape, dtype=np.int32)  # one region floods everything, no line
    from competition.metrics._flood import flood_with_lines  # numba: compiled on first use

    return flood_with_lines(markers.astype(np.int32))


@dataclass(frozen=True)
class SegmentationScores:
    v_rand: float
    v_info: float
    rand_split: float
    rand_merge: float
    info_split: float
    info_merge: float


def foreground_restricted_scores(truth: np.ndarray, proposal: np.ndarray) -> SegmentationScores:
    """V_rand and V_info of two label images over the truth's foreground (truth label > 0)."""
    t, n_t = relabel(truth)
    p, n_p = relabel(proposal)
    fg = t > 0
    n = int(fg.sum())
    if n == 0:
        # No true foreground: nothing to get wrong (Fiji divides by zero here).
        return SegmentationScores(1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    i, j, c = overlaps(t, n_t, p, n_p, where=fg)
    pij = c / n
    a = np.bincount(i, weights=pij, minlength=n_t + 1)[1:]
    matched = j > 0
    b = np.bincount(j[matched], weights=pij[matched], minlength=n_p + 1)[1:]
    p0 = float(pij[~matched].sum())  # proposal-0 pixels in foreground: singletons
    sum_t2 = float((a**2).sum())
    sum_s2 = float((b**2).sum()) + p0 / n
    sum_p2 = float((pij[matched] ** 2).sum()) + p0 / n
    v_rand = 2 * sum_p2 / (sum_s2 + sum_t2)

    h_t = _entropy(a)
    h_s = _entropy(b) + p0 * np.log(n)
    h_st = _entropy(pij[matched]) + p0 * np.log(n)
    mutual = h_s + h_t - h_st
    if h_s <= 0 or h_t <= 0:
        v_info, info_split, info_merge = 0.0, 0.0, 0.0
    else:
        v_info = 2 * mutual / (h_s + h_t)
        info_split, info_merge = mutual / h_t, mutual / h_s
    return SegmentationScores(
        v_rand=float(v_rand),
        v_info=float(v_info),
        rand_split=sum_p2 / sum_t2,
        rand_merge=sum_p2 / sum_s2,
        info_split=float(info_split),
        info_merge=float(info_merge),
    )


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


@dataclass(frozen=True)
class StackScores:
    """Per-slice, per-threshold tables; aggregate with `best_over_thresholds`."""

    v_rand: np.ndarray  # (n_slices, n_thresholds)
    v_info: np.ndarray
    pixel_error: np.ndarray
    thresholds: tuple[float, ...]


def score_slice(label: np.ndarray, proposal: np.ndarray,
                thresholds: Sequence[float] = THRESHOLDS) -> np.ndarray:
    """Rows (v_rand, v_info, pixel_error) x thresholds for one slice.

    `proposal` is float in [0, 1] (8-bit maps are divided by 255 first by the caller).
    Identical binarisations (binary or 8-bit maps, truth 0/255 at every th) are computed once.
    """
    out = np.empty((3, len(thresholds)))
    truth_cache: dict[bytes, np.ndarray] = {}
    prop_cache: dict[bytes, tuple[float, float]] = {}
    for k, th in enumerate(thresholds):
        t_bin = label > th
        t_key = np.packbits(t_bin).tobytes()
        if t_key not in truth_cache:
            truth_cache[t_key] = components(t_bin)[0]
        truth_seg = truth_cache[t_key]
        p_bin = proposal > th
        p_key = t_key + b"|" + np.packbits(p_bin).tobytes()
        if p_key not in prop_cache:
            s = foreground_restricted_scores(truth_seg, thin_borders(p_bin))
            prop_cache[p_key] = (s.v_rand, s.v_info)
        out[0, k], out[1, k] = prop_cache[p_key]
        out[2, k] = float(np.mean(t_bin != p_bin))
    return out


def best_over_thresholds(table: np.ndarray, rows: np.ndarray | None = None) -> tuple[float, int]:
    """Max over thresholds of the mean over the selected slices, and the threshold's index."""
    sel = table if rows is None else table[rows]
    means = sel.mean(axis=0)
    k = int(np.argmax(means))
    return float(means[k]), k


def pixel_error(table: np.ndarray, rows: np.ndarray | None = None) -> float:
    """Fiji's PixelError variant: minimum over thresholds of the mean over slices."""
    sel = table if rows is None else table[rows]
    return float(sel.mean(axis=0).min())


def foreground_overlap(label: np.ndarray, proposal: np.ndarray,
                       th: float = 0.5) -> tuple[float, float]:
    """Foreground (cell) IoU and Dice of `label > 0` against `proposal > th`."""
    t, p = label > 0, proposal > th
    inter = int((t & p).sum())
    union = int((t | p).sum())
    total = int(t.sum() + p.sum())
    iou = inter / union if union else 1.0
    dice = 2 * inter / total if total else 1.0
    return iou, dice


def adapted_rand_error(truth: np.ndarray, proposal: np.ndarray) -> tuple[float, float, float]:
    """scikit-image's `adapted_rand_error` (error, precision, recall): a named extra, NOT ISBI.

    It normalises by pairs, treats proposal 0 as an ordinary segment, and calls the
    truth-normalised ratio "precision" (METRICS.md §2).
    """
    t, n_t = relabel(truth)
    p, n_p = relabel(proposal)
    i, j, c = overlaps(t, n_t, p, n_p, where=t > 0)
    c = c.astype(np.float64)
    n = c.sum()
    a = np.bincount(i, weights=c)
    b = np.bincount(j, weights=c)
    sum_p2 = (c**2).sum() - n
    sum_a2 = (a**2).sum() - n
    sum_b2 = (b**2).sum() - n
    precision = sum_p2 / sum_a2
    recall = sum_p2 / sum_b2
    f = 2.0 * precision * recall / (precision + recall)
    return float(1.0 - f), float(precision), float(recall)
