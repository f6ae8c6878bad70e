"""Scores of training items weighed toward a test set that is drawn otherwise (pure, no I/O).

When the test items do not look like the training items (covariate shift: Kaggle's DSB
stage-1 test has other magnifications, more crowded tissue, other stains), a cross-validation
that averages every training item estimates a board of training-like items. Adversarial
validation tells the two sets apart with a classifier on what can be seen without labels
(each task's description of an item); each training item's out-of-fold probability p of
being a test item gives its importance weight p / (1 - p), the density ratio of test to
training items up to a constant (Sugiyama et al. 2007; Shimodaira 2000). The cross-validated
item scores averaged with these weights estimate the score on items drawn like the test
items, with a bootstrap interval over the training items and the effective number of items
the weights leave (Kish).

Only the test items' descriptions are used, never their labels: a participant can run this.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from competition.tasks.base import Scoring, aggregate
from competition.tasks.comparison import percentile_interval, resampling_weights

CLIP = 1e-3  # probabilities kept inside [CLIP, 1 - CLIP]: no item weighs infinitely


@dataclass(frozen=True)
class Shift:
    """How well the training and test items are told apart (ROC AUC of the out-of-fold
    probabilities: 0.5 = alike) and each training item's importance weight (mean 1)."""

    auc: float
    weights: np.ndarray
    effective_items: float

    def as_json(self) -> dict[str, Any]:
        return {"auc": self.auc, "effective_items": self.effective_items,
                "items": len(self.weights)}

    def weights_of(self, order: Sequence[str], keys: Sequence[str]) -> np.ndarray:
        """The weights of the items `keys`, the weights being in `order` (their keys)."""
        if len(order) != len(self.weights):
            raise ValueError(f"{len(order)} keys for {len(self.weights)} weights")
        position = {k: p for p, k in enumerate(order)}
        unknown = [k for k in keys if k not in position]
        if unknown:
            raise ValueError(f"item {unknown[0]!r} has no weight")
        out: np.ndarray = self.weights[[position[k] for k in keys]]
        return out


def adversarial_weights(train: np.ndarray, test: np.ndarray, *, folds: int = 5,
                        repeats: int = 10, seed: int = 0) -> Shift:
    """Importance weights of the training items (n, d) toward the test items (m, d) from a
    standardised logistic regression, its probabilities out of fold (every item scored by a
    classifier that did not see it), averaged over `repeats` shufflings of the folds: one
    shuffling alone moves a DSB estimate by about 0.02 (sd over seeds)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, test = np.asarray(train, np.float64), np.asarray(test, np.float64)
    if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
        raise ValueError(f"descriptions of shapes {train.shape} and {test.shape}: (items, "
                         "features) with the same features are needed")
    folds = min(folds, len(train), len(test))
    if folds < 2:
        raise ValueError("at least two training and two test items are needed")
    x = np.concatenate([train, test])
    y = np.r_[np.zeros(len(train)), np.ones(len(test))]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    p = np.mean([cross_val_predict(model, x, y, method="predict_proba",
                                   cv=StratifiedKFold(folds, shuffle=True,
                                                      random_state=seed + r))[:, 1]
                 for r in range(max(repeats, 1))], axis=0)
    q = np.clip(p[:len(train)], CLIP, 1 - CLIP)
    odds = q / (1 - q)
    weights = odds / odds.mean()
    return Shift(float(roc_auc_score(y, p)), weights,
                 float(weights.sum() ** 2 / (weights ** 2).sum()))


@dataclass(frozen=True)
class WeightedEstimate:
    score: float
    low: float
    high: float

    def as_json(self) -> dict[str, Any]:
        return {"score": self.score, "low": self.low, "high": self.high}


def weighted_estimate(task: Scoring[Any, Any], values: np.ndarray,
                      weights: np.ndarray) -> WeightedEstimate:
    """The task's score of items with `values` (n, k) under importance `weights` (n,), and a
    95 % bootstrap interval (items resampled, each keeping its weight: the classifier's own
    variability, which the weights carry, is not in it)."""
    values = np.asarray(values, np.float64)
    weights = np.asarray(weights, np.float64)
    n = len(values)
    if weights.shape != (n,) or not n or not np.all(np.isfinite(weights)) or \
            np.any(weights < 0) or not weights.sum():
        raise ValueError("one non-negative weight per item, not all zero, is needed")
    one = weights * n / weights.sum()
    resampled = resampling_weights(n) * weights
    resampled *= n / resampled.sum(axis=1, keepdims=True)
    low, high = percentile_interval(aggregate(task, values, resampled))
    return WeightedEstimate(float(aggregate(task, values, one)), low, high)
