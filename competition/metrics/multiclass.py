"""Multi-class Jaccard from one confusion matrix (METRICS.md §4)."""

from __future__ import annotations

import numpy as np


def confusion_matrix(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """C[t, p] = number of pixels of true class t predicted as p."""
    t = np.asarray(truth, np.int64).ravel()
    p = np.asarray(pred, np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"shape mismatch {np.shape(truth)} vs {np.shape(pred)}")
    bad = (t < 0) | (t >= n_classes) | (p < 0) | (p >= n_classes)
    if bad.any():
        raise ValueError(f"class values must lie in 0..{n_classes - 1}")
    return np.bincount(t * n_classes + p, minlength=n_classes**2).reshape(n_classes, n_classes)


def per_class_iou(confusion: np.ndarray) -> np.ndarray:
    """IoU_c = C_cc / (row_c + col_c - C_cc); NaN for a class absent from truth and prediction.

    Parameters
    ----------
    confusion : ndarray (K, K)
        Counts, truth along rows and prediction along columns.

    Returns
    -------
    ndarray (K,)
        Each class's Jaccard index.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[0, 0, 1, 1], [0, 2, 2, 1], [2, 2, 2, 1]])
    >>> pred = np.array([[0, 1, 1, 1], [0, 2, 2, 2], [2, 2, 0, 1]])
    >>> per_class_iou(confusion_matrix(truth, pred, 3)).round(6).tolist()
    [0.5, 0.6, 0.666667]
    >>> round(mean_iou(confusion_matrix(truth, pred, 3)), 6)
    0.588889
    """
    c = np.asarray(confusion, dtype=np.float64)
    inter = np.diag(c)
    union = c.sum(axis=1) + c.sum(axis=0) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, np.nan)


def mean_iou(confusion: np.ndarray) -> float:
    """Mean over the classes present in truth or prediction (absent classes are excluded)."""
    iou = per_class_iou(confusion)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def dataset_iou(confusions: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """Dataset aggregation by summing the confusion matrices, then IoU ("micro" over images)."""
    total = np.sum(confusions, axis=0)
    return per_class_iou(total), mean_iou(total)
