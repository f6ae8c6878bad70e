"""The validation picture of an EM model (pure)."""

from __future__ import annotations

import numpy as np

from competition.formats.pictures import FN, FP, TP, gray_rgb, heat


def frame(image: np.ndarray, cell_probability: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Image | cell probability | membrane pixels at 0.5: found green, false red, missed blue."""
    pred_membrane = cell_probability < 0.5
    true_membrane = truth == 0
    overlay = gray_rgb(image) // 2
    overlay[pred_membrane & true_membrane] = TP
    overlay[pred_membrane & ~true_membrane] = FP
    overlay[~pred_membrane & true_membrane] = FN
    return np.concatenate([gray_rgb(image), heat(cell_probability), overlay], axis=1)
