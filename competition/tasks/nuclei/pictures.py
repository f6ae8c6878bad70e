"""The validation picture of a nuclei model (pure)."""

from __future__ import annotations

import numpy as np

from competition.formats.pictures import FN, FP, TP, gray_rgb, heat, outline
from competition.metrics.nuclei import matched_objects


def frame(image: np.ndarray, foreground: np.ndarray, pred_labels: np.ndarray,
          true_labels: np.ndarray) -> np.ndarray:
    """Image | foreground probability | objects at IoU 0.5: matched green, false positives
    red, missed true nuclei outlined blue."""
    hit_t, hit_p = matched_objects(true_labels, pred_labels)
    overlay = gray_rgb(image) // 2
    overlay[(pred_labels > 0) & hit_p] = TP
    overlay[(pred_labels > 0) & ~hit_p] = FP
    overlay[outline((true_labels > 0) & ~hit_t, true_labels)] = FN
    return np.concatenate([gray_rgb(image), heat(foreground), overlay], axis=1)
