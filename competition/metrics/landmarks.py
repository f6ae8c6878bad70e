"""Landmark errors against manual placement and the win rate against a reference (§5).

RMSE is over points (sqrt of the mean squared Euclidean distance), not per coordinate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def distances(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Euclidean distance per point; inputs (..., dim) of equal shape."""
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    if pred.shape != truth.shape:
        raise ValueError(f"shape mismatch {pred.shape} vs {truth.shape}")
    d: np.ndarray = np.sqrt(((pred - truth) ** 2).sum(axis=-1))
    return d


def rmse(d: np.ndarray) -> float:
    """The root of the mean squared distance over points (not per coordinate).

    Parameters
    ----------
    d : ndarray
        Euclidean distances of predicted to true points (any shape).

    Returns
    -------
    float
        NaN for no points.

    Examples
    --------
    >>> import numpy as np
    >>> d = distances(np.array([[13, 14], [20, 20], [30, 33]]),
    ...               np.array([[10, 10], [20, 20], [30, 30]]))
    >>> d.tolist()
    [5.0, 0.0, 3.0]
    >>> round(rmse(d), 6)
    3.366502
    """
    d = np.asarray(d, np.float64)
    return float(np.sqrt(np.mean(d**2))) if d.size else float("nan")


@dataclass(frozen=True)
class WinRate:
    percent: float  # 100 * mean[d_model < d_reference], strict
    wins: int
    ties: int
    n: int


def win_rate(d_model: np.ndarray, d_reference: np.ndarray) -> WinRate:
    """How often a model's point is strictly closer than a reference's (e.g. ALPACA's).

    Parameters
    ----------
    d_model, d_reference : ndarray, same shape
        Each point's distance to the truth, for the model and for the reference.

    Returns
    -------
    WinRate
        The percentage of strict wins, with the counts of wins and ties (ties are not wins).

    Examples
    --------
    >>> import numpy as np
    >>> win_rate(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 1.0]))
    WinRate(percent=33.333333333333336, wins=1, ties=1, n=3)
    """
    d_model, d_reference = np.asarray(d_model), np.asarray(d_reference)
    if d_model.shape != d_reference.shape:
        raise ValueError("model and reference distances differ in shape")
    wins = int((d_model < d_reference).sum())
    ties = int((d_model == d_reference).sum())
    n = int(d_model.size)
    return WinRate(100.0 * wins / n if n else float("nan"), wins, ties, n)


def per_landmark(d: np.ndarray) -> dict[str, np.ndarray]:
    """Columns of a (specimen, landmark) distance table summarised per landmark."""
    d = np.asarray(d, np.float64)
    return {
        "rmse": np.sqrt((d**2).mean(axis=0)),
        "mean": d.mean(axis=0),
        "median": np.median(d, axis=0),
    }


def win_rate_interval(wins: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) binomial interval of a win rate, in percent.

    Examples
    --------
    >>> low, high = win_rate_interval(8, 10)
    >>> round(low, 1), round(high, 1)
    (44.4, 97.5)
    """
    if n == 0:
        return float("nan"), float("nan")
    from scipy.stats import binomtest

    ci = binomtest(int(wins), int(n)).proportion_ci(confidence, method="exact")
    return 100.0 * float(ci.low), 100.0 * float(ci.high)


def paired_test(errors_a: np.ndarray, errors_b: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p value of paired errors (e.g. per-specimen mean
    errors of two methods; a specimen's points are not independent, so pair specimens, not
    points). 1.0 where every pair is equal; NaN for fewer than two pairs."""
    a, b = np.asarray(errors_a, np.float64), np.asarray(errors_b, np.float64)
    if a.shape != b.shape:
        raise ValueError("paired errors differ in shape")
    if a.size < 2:
        return float("nan")
    if np.all(a == b):
        return 1.0
    from scipy.stats import wilcoxon

    return float(wilcoxon(a, b).pvalue)
