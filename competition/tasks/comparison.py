"""Intervals and paired comparisons of scores over the same items (pure, no I/O).

Every task's score is a function of the mean of its item values (`base.aggregate`), so a
bootstrap over items is one matrix product of multinomial resampling weights with the item
values. Two results over the same items are compared on the same resamples (a paired
bootstrap of their difference) and by a Wilcoxon signed-rank test of their per-item scores.
The leaderboard, `competition cv` and the report tools all use these: one way to say that
A beats B.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from competition.tasks.base import Scoring, aggregate

N_BOOTSTRAP = 1000
BOOTSTRAP_SEED = 20180416  # fixed: the same items give the same intervals every time


def resampling_weights(n: int, size: int = N_BOOTSTRAP,
                       seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """(size, n) multinomial resampling counts of n items (each row sums to n)."""
    rng = np.random.default_rng(seed)
    weights: np.ndarray = rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(
        np.float64)
    return weights


def percentile_interval(samples: np.ndarray) -> tuple[float, float]:
    """The 95 % percentile interval of bootstrap samples."""
    low, high = np.percentile(np.asarray(samples, np.float64), [2.5, 97.5])
    return float(low), float(high)


@dataclass(frozen=True)
class Estimate:
    """A score over items with its 95 % bootstrap interval."""

    score: float
    low: float
    high: float
    n: int

    def as_json(self) -> dict[str, Any]:
        return {"score": self.score, "low": self.low, "high": self.high, "n": self.n}


def estimate(task: Scoring[Any, Any], values: np.ndarray,
             weights: np.ndarray | None = None) -> Estimate:
    """The task's score of items with `values` (n_items, k) and its bootstrap interval."""
    values = np.asarray(values, np.float64)
    n = len(values)
    weights = resampling_weights(n) if weights is None else weights
    low, high = percentile_interval(aggregate(task, values, weights))
    return Estimate(float(aggregate(task, values)), low, high, n)


@dataclass(frozen=True)
class PairedComparison:
    """A minus B over the same items: the difference of their scores (in the direction
    where positive means A is better), its paired 95 % bootstrap interval and a two-sided
    Wilcoxon signed-rank p over the items' own scores."""

    difference: float
    low: float
    high: float
    wilcoxon_p: float
    n: int

    @property
    def a_is_better(self) -> bool:
        """The interval lies above zero: A beats B on resampled items."""
        return self.low > 0

    @property
    def b_is_better(self) -> bool:
        return self.high < 0

    def as_json(self) -> dict[str, Any]:
        return {"difference": self.difference, "low": self.low, "high": self.high,
                "wilcoxon_p": self.wilcoxon_p, "n": self.n}

    def sentence(self, a: str, b: str, digits: int = 3) -> str:
        """One line a README can quote."""
        verdict = (f"{a} beats {b}" if self.a_is_better else f"{b} beats {a}"
                   if self.b_is_better else f"{a} and {b} are not distinguishable")
        return (f"{verdict}: difference {self.difference:+.{digits}f} (95 % paired bootstrap "
                f"{self.low:+.{digits}f} to {self.high:+.{digits}f}; Wilcoxon p = "
                f"{self.wilcoxon_p:.3g}; {self.n} items)")


def item_scores(task: Scoring[Any, Any], values: np.ndarray) -> np.ndarray:
    """Each item's own score: the task's aggregate of that item alone (the Wilcoxon test's
    input). Where the score chooses over the items' means (EM: the best threshold of the
    mean V_rand), an item's own score chooses for that item alone."""
    values = np.asarray(values, np.float64)
    out: np.ndarray = np.asarray(task.finish(values), np.float64)
    return out


def paired(task: Scoring[Any, Any], values_a: np.ndarray, values_b: np.ndarray,
           weights: np.ndarray | None = None) -> PairedComparison:
    """A against B, both (n_items, k) over the same items in the same order."""
    from scipy.stats import wilcoxon

    a, b = np.asarray(values_a, np.float64), np.asarray(values_b, np.float64)
    if a.shape != b.shape or not len(a):
        raise ValueError(f"paired comparison of items {a.shape} and {b.shape}: the same "
                         "items, at least one, are needed")
    n = len(a)
    weights = resampling_weights(n) if weights is None else weights
    sign = 1.0 if task.higher_is_better else -1.0
    diff = sign * (aggregate(task, a, weights) - aggregate(task, b, weights))
    low, high = percentile_interval(diff)
    per_item = item_scores(task, a) - item_scores(task, b)
    p = 1.0 if not np.any(per_item) else float(wilcoxon(per_item).pvalue)
    return PairedComparison(float(sign * (aggregate(task, a) - aggregate(task, b))),
                            low, high, p, n)
