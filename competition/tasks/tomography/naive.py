"""A day-one tomography submission's labels (the demo ranks it): two grey thresholds (pore
below, fibre above, matrix between) chosen on the training volume's histogram, applied slice by
slice after a light in-plane smoothing."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from competition.tasks.tomography import data

SMOOTHING = 1.0


def _smooth(slab: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.rint(ndimage.gaussian_filter(slab.astype(np.float32),
                                                      (0, SMOOTHING, SMOOTHING)))
    result: np.ndarray = np.clip(out, 0, 255).astype(np.uint8)
    return result


def thresholds(train: data.TomoData, step: int = 32) -> tuple[int, int]:
    """(t1, t2) maximising the training volume's mean Jaccard (8-bit grey levels)."""
    assert train.labels is not None
    histogram = np.zeros((3, 256), np.int64)
    for z0 in range(0, train.shape[0], step):
        grey = _smooth(np.asarray(train.volume[z0:z0 + step]))
        labels = np.asarray(train.labels[z0:z0 + step])
        histogram += np.bincount(labels.ravel().astype(np.int64) * 256 + grey.ravel(),
                                 minlength=768).reshape(3, 256)
    cumulative = np.concatenate([np.zeros((3, 1), np.int64), histogram.cumsum(axis=1)], axis=1)
    total = cumulative[:, -1]
    best, choice = -1.0, (0, 255)
    for t1 in range(0, 256, 2):
        for t2 in range(t1 + 2, 257, 2):
            below = cumulative[:, t1]  # grey < t1: pore
            above = total - cumulative[:, t2]  # grey >= t2: fibre
            middle = total - below - above  # matrix
            predicted = np.array([middle.sum(), above.sum(), below.sum()])
            hits = np.array([middle[0], above[1], below[2]])
            union = total + predicted - hits
            score = float(np.mean(np.where(union > 0, hits / np.maximum(union, 1), 0)))
            if score > best:
                best, choice = score, (t1, t2)
    return choice


class Thresholded:
    """The test volume's labels, made a slab at a time."""

    def __init__(self, volume: object, cuts: tuple[int, int]):
        self.volume, self.cuts = volume, cuts
        self.shape = tuple(int(s) for s in volume.shape)  # type: ignore[attr-defined]

    def __getitem__(self, key: slice) -> np.ndarray:
        grey = _smooth(np.asarray(self.volume[key]))  # type: ignore[index]
        out = np.zeros(grey.shape, np.uint8)
        out[grey >= self.cuts[1]] = 1
        out[grey < self.cuts[0]] = 2
        return out
