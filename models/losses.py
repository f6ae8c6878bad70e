"""Segmentation losses. Targets may carry a per-pixel weight map as their last channel
(`y_true[..., :-1]` the labels, `y_true[..., -1:]` the weights) for the weighted loss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from keras import ops

EPS = 1e-6


def binary_crossentropy(y_true: Any, y_pred: Any) -> Any:
    y_pred = ops.clip(y_pred, EPS, 1 - EPS)
    return ops.mean(-(y_true * ops.log(y_pred) + (1 - y_true) * ops.log(1 - y_pred)))


def weighted_binary_crossentropy(y_true: Any, y_pred: Any) -> Any:
    """Cross-entropy weighted per pixel by the weight channel of `y_true` (U-Net paper)."""
    labels, weights = y_true[..., :-1], y_true[..., -1:]
    y_pred = ops.clip(y_pred, EPS, 1 - EPS)
    ce = -(labels * ops.log(y_pred) + (1 - labels) * ops.log(1 - y_pred))
    return ops.sum(ce * weights) / (ops.sum(weights) * ops.cast(ops.shape(labels)[-1],
                                                                 "float32") + EPS)


def soft_dice(y_true: Any, y_pred: Any) -> Any:
    """1 - soft Dice, per channel, averaged."""
    axes = (0, 1, 2)
    inter = ops.sum(y_true * y_pred, axis=axes)
    total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    return 1 - ops.mean((2 * inter + 1) / (total + 1))


def soft_jaccard(y_true: Any, y_pred: Any) -> Any:
    """1 - soft Jaccard (IoU), per channel, averaged."""
    axes = (0, 1, 2)
    inter = ops.sum(y_true * y_pred, axis=axes)
    union = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes) - inter
    return 1 - ops.mean((inter + 1) / (union + 1))


def _labels(y_true: Any, weighted: bool) -> Any:
    return y_true[..., :-1] if weighted else y_true


def combined(names: list[str], weighted: bool) -> Callable[[Any, Any], Any]:
    """A loss summing the named terms ("bce", "weighted_bce", "dice", "jaccard")."""
    terms: dict[str, Callable[[Any, Any], Any]] = {
        "bce": lambda t, p: binary_crossentropy(_labels(t, weighted), p),
        "weighted_bce": weighted_binary_crossentropy,
        "dice": lambda t, p: soft_dice(_labels(t, weighted), p),
        "jaccard": lambda t, p: soft_jaccard(_labels(t, weighted), p)}
    unknown = set(names) - set(terms)
    if unknown:
        raise ValueError(f"unknown loss terms {sorted(unknown)}; choose from {sorted(terms)}")
    if "weighted_bce" in names and not weighted:
        raise ValueError("weighted_bce needs weight maps (set weight_maps: true)")

    def loss(y_true: Any, y_pred: Any) -> Any:
        return sum(terms[n](y_true, y_pred) for n in names)

    loss.__name__ = "_".join(names)
    return loss


# --- boundary-aware losses (Kervadec et al. 2019, "Boundary loss for highly unbalanced
# segmentation"): targets carry the label as channel 0 and its signed distance map (negative
# inside the object, positive outside, precomputed once per slice) as channel 1.

def generalized_dice(y_true: Any, y_pred: Any) -> Any:
    """1 - generalized Dice (Sudre et al. 2017) over foreground and background, each class
    weighted by 1 / (its volume in the batch)^2 (a volume under one pixel counts as one, so
    a batch without foreground stays finite)."""
    t = ops.concatenate([y_true, 1 - y_true], axis=-1)
    p = ops.concatenate([y_pred, 1 - y_pred], axis=-1)
    axes = (0, 1, 2)
    weights = 1.0 / ops.square(ops.maximum(ops.sum(t, axis=axes), 1.0))
    inter = ops.sum(weights * ops.sum(t * p, axis=axes))
    total = ops.sum(weights * ops.sum(t + p, axis=axes))
    return 1 - 2 * inter / (total + EPS)


def boundary_loss(distance: Any, y_pred: Any) -> Any:
    """Kervadec's boundary loss: the mean of the predicted foreground probability weighted by
    the ground truth's signed distance (smallest when the prediction fills the object
    exactly); a slice without foreground has a zero map and adds nothing."""
    return ops.mean(distance * y_pred)


def with_boundary(names: list[str], boundary_weight: Any,
                  rebalance: bool = False) -> Callable[[Any, Any], Any]:
    """A loss over targets (label, signed distance): the named regional terms ("bce",
    "dice", "gdl") plus `boundary_weight` (a Keras variable a callback raises during
    training) times the boundary loss; with `rebalance` the regional terms are scaled by
    1 - weight, Kervadec's alpha schedule."""
    terms: dict[str, Callable[[Any, Any], Any]] = {
        "bce": binary_crossentropy, "dice": soft_dice, "gdl": generalized_dice}
    unknown = set(names) - set(terms) - {"boundary"}
    if unknown:
        raise ValueError(f"unknown loss terms {sorted(unknown)}; choose from "
                         f"{sorted([*terms, 'boundary'])}")
    regional = [n for n in names if n != "boundary"]

    def loss(y_true: Any, y_pred: Any) -> Any:
        labels, distance = y_true[..., :1], y_true[..., 1:2]
        region = sum(terms[n](labels, y_pred) for n in regional)
        if rebalance:
            region = region * (1 - boundary_weight)
        return region + boundary_weight * boundary_loss(distance, y_pred)

    loss.__name__ = "_".join(names)
    return loss
