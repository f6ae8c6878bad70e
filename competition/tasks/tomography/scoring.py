"""Class-wise Jaccard of a label volume against the hidden test slab, from confusion matrices
counted slice by slice while both volumes stream past in z order (never whole in memory)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from competition.metrics.multiclass import mean_iou, per_class_iou
from competition.tasks.tomography.submission import N_CLASSES, LabelVolume, Slab


@numba.njit(cache=True, nogil=True)
def count_slices(truth: np.ndarray, pred: np.ndarray, out: np.ndarray) -> int:  # pragma: no cover
    """out[z, t, p] += voxels of slice z with true class t predicted as p; returns how many
    voxels held a value of N_CLASSES or more (none, for checked inputs)."""
    n_classes = out.shape[1]
    bad = 0
    for z in range(truth.shape[0]):
        counts = np.zeros(n_classes * n_classes, np.int64)
        t_slice = truth[z].ravel()
        p_slice = pred[z].ravel()
        for i in range(t_slice.shape[0]):
            t = t_slice[i]
            p = p_slice[i]
            if t < n_classes and p < n_classes:
                counts[t * n_classes + p] += 1
            else:
                bad += 1
        for k in range(n_classes * n_classes):
            out[z, k // n_classes, k % n_classes] += counts[k]
    return bad


def confusion_by_slice(truth: LabelVolume, pred: LabelVolume) -> np.ndarray:
    """(slices, K, K) confusion matrices: the two volumes' slabs (of whatever depth each is
    chunked in) are walked together in z order, each decoded once."""
    n = truth.shape[0]
    out = np.zeros((n, N_CLASSES, N_CLASSES), np.int64)
    for z0, z1, t, p in aligned(truth.slabs(), pred.slabs()):
        if count_slices(t, p, out[z0:z1]):
            raise ValueError("a label volume holds values outside its classes")
    return out


def aligned(first: Iterator[Slab], second: Iterator[Slab]
            ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """The common z ranges of two streams of slabs that both cover 0..n in order."""
    a, b = next(first, None), next(second, None)
    while a is not None and b is not None:
        z0, z1 = max(a.z0, b.z0), min(a.z1, b.z1)
        if z0 < z1:
            yield (z0, z1, a.labels[z0 - a.z0:z1 - a.z0], b.labels[z0 - b.z0:z1 - b.z0])
        if a.z1 <= b.z1:
            a = next(first, None)
        if b.z1 <= z1:
            b = next(second, None)


@dataclass
class Totals:
    """What a set of slices scores: its summed confusion and the Jaccard indices from it."""

    confusion: np.ndarray  # (K, K), truth along rows

    @property
    def jaccard(self) -> np.ndarray:
        result: np.ndarray = per_class_iou(self.confusion)
        return result

    @property
    def mean(self) -> float:
        return mean_iou(self.confusion)


def intersections_unions(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class (..., K): C_cc and row_c + col_c - C_cc, additive over slices."""
    inter = np.diagonal(confusion, axis1=-2, axis2=-1)
    union = confusion.sum(axis=-1) + confusion.sum(axis=-2) - inter
    return inter, union


def item_rows(confusions: np.ndarray, usage: list[str | None]) -> list[dict[str, Any]]:
    inter, union = intersections_unions(confusions)
    return [{"slice": z, "usage": usage[z], "intersection": inter[z].tolist(),
             "union": union[z].tolist()} for z in range(len(confusions))]
