"""2018 Data Science Bowl: mean precision over IoU thresholds 0.50..0.95 (METRICS.md §1).

A predicted object is a hit at T percent iff 100 * I > T * U (strict, integers), so a
prediction matches at most one true object and no assignment step is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from competition.metrics.contingency import overlaps, relabel

THRESHOLDS_PERCENT = np.arange(50, 100, 5, dtype=np.int64)
THRESHOLDS = tuple(int(t) / 100 for t in THRESHOLDS_PERCENT)


@dataclass(frozen=True)
class ImageMatch:
    """Per-threshold counts for one image."""

    n_true: int
    n_pred: int
    tp: np.ndarray  # true positives at each threshold, shape (10,)

    @property
    def fp(self) -> np.ndarray:
        return self.n_pred - self.tp

    @property
    def fn(self) -> np.ndarray:
        return self.n_true - self.tp

    @property
    def precision(self) -> np.ndarray:
        """P(t) = TP / (TP + FP + FN); both sides empty scores 1 (the harness's rule)."""
        if self.n_true == 0 and self.n_pred == 0:
            return np.ones(len(THRESHOLDS_PERCENT))
        precision: np.ndarray = self.tp / (self.n_true + self.n_pred - self.tp)
        return precision

    @property
    def score(self) -> float:
        return float(self.precision.mean())


def match_image(true_labels: np.ndarray, pred_labels: np.ndarray) -> ImageMatch:
    """Match the objects of two label images of one image (0 = background)."""
    if np.shape(true_labels) != np.shape(pred_labels):
        raise ValueError(f"shape mismatch {np.shape(true_labels)} vs {np.shape(pred_labels)}")
    t, n_t = relabel(true_labels)
    p, n_p = relabel(pred_labels)
    return match_relabelled(t, n_t, p, n_p)


def match_relabelled(t: np.ndarray, n_t: int, p: np.ndarray, n_p: int) -> ImageMatch:
    """`match_image` for flat labels already consecutive 1..n (skips relabelling)."""
    fg = (t > 0) & (p > 0)
    return match_pairs(t[fg], p[fg], np.bincount(t, minlength=n_t + 1),
                       np.bincount(p, minlength=n_p + 1))


def match_pairs(t_ids: np.ndarray, p_ids: np.ndarray, area_t: np.ndarray,
                area_p: np.ndarray) -> ImageMatch:
    """Match from the (true, predicted) label pairs of the pixels both cover.

    `area_t`/`area_p` are the object areas indexed by label (index 0 unused); only pixels
    inside objects are ever touched, so the cost is O(object pixels + overlapping pairs).
    """
    n_t, n_p = len(area_t) - 1, len(area_p) - 1
    if n_t == 0 or n_p == 0:
        return ImageMatch(n_t, n_p, np.zeros(len(THRESHOLDS_PERCENT), dtype=np.int64))
    i, j, inter = overlaps(t_ids, n_t, p_ids, n_p)
    union = area_t[i] + area_p[j] - inter
    hits = 100 * inter[:, None] > THRESHOLDS_PERCENT[None, :] * union[:, None]
    return ImageMatch(n_t, n_p, hits.sum(axis=0).astype(np.int64))


def image_score(true_labels: np.ndarray, pred_labels: np.ndarray) -> float:
    """The DSB 2018 score of one image: the mean over IoU thresholds 0.50..0.95 of
    TP / (TP + FP + FN), a hit being IoU strictly above the threshold.

    Parameters
    ----------
    true_labels, pred_labels : ndarray of int, same shape
        Label images (0 is background; labels need not be consecutive).

    Returns
    -------
    float
        The image score in [0, 1]; both images empty score 1.

    Examples
    --------
    A true object of 2x2 pixels, predicted by 3 of them (IoU 0.75: a hit up to 0.70):

    >>> import numpy as np
    >>> truth = np.zeros((4, 4), int); truth[:2, :2] = 1
    >>> pred = truth.copy(); pred[1, 1] = 0
    >>> round(image_score(truth, pred), 6)
    0.5
    >>> image_score(np.zeros((2, 2), int), np.zeros((2, 2), int))
    1.0
    """
    return match_image(true_labels, pred_labels).score


def mean_precision_per_threshold(matches: list[ImageMatch]) -> np.ndarray:
    """Mean over images of P(t), one value per threshold."""
    if not matches:
        return np.full(len(THRESHOLDS_PERCENT), np.nan)
    means: np.ndarray = np.mean([m.precision for m in matches], axis=0)
    return means


def mean_score(matches: list[ImageMatch]) -> float:
    """The competition score: mean over images of the image scores."""
    return float(np.mean([m.score for m in matches])) if matches else float("nan")


def matched_objects(true_labels: np.ndarray, pred_labels: np.ndarray,
                    threshold_percent: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel masks of true objects that are matched (TP, else FN) and of predicted objects
    that are matched (TP, else FP) at one IoU threshold: for pictures, not the score."""
    t, n_t = relabel(np.ravel(true_labels))
    p, n_p = relabel(np.ravel(pred_labels))
    hit_t = np.zeros(n_t + 1, bool)
    hit_p = np.zeros(n_p + 1, bool)
    if n_t and n_p:
        fg = (t > 0) & (p > 0)
        i, j, inter = overlaps(t[fg], n_t, p[fg], n_p)
        area_t, area_p = np.bincount(t, minlength=n_t + 1), np.bincount(p, minlength=n_p + 1)
        hit = 100 * inter > threshold_percent * (area_t[i] + area_p[j] - inter)
        hit_t[i[hit]] = hit_p[j[hit]] = True
    shape = np.shape(true_labels)
    return hit_t[t].reshape(shape), hit_p[p].reshape(shape)
