"""The validation picture of an MRI model (pure): a montage of slices of the held-out
patient's FLAIR with the reference contour (green) and the predicted one (red). Drawn only
on the validation patient of a training run, whose labels the participant has."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from competition.formats.pictures import FP, TP, gray_rgb

N_SLICES = 4


def contour(mask: np.ndarray) -> np.ndarray:
    """The mask's border pixels (mask less its erosion by the cross)."""
    eroded: np.ndarray = ndimage.binary_erosion(mask, border_value=0)
    border: np.ndarray = mask & ~eroded
    return border


def chosen_slices(truth: np.ndarray, prediction: np.ndarray, n: int = N_SLICES) -> list[int]:
    """The `n` slices with the most reference or predicted abnormality, in slice order
    (evenly spaced slices when there is none)."""
    area = (truth | prediction).reshape(len(truth), -1).sum(axis=1)
    if not area.any():
        return sorted({int(z) for z in np.linspace(0, len(truth) - 1, n).round()})
    order = np.argsort(-area, kind="stable")[:n]
    return sorted(int(z) for z in order if area[z] > 0)


def montage(flair: np.ndarray, probability: np.ndarray, truth: np.ndarray,
            threshold: float = 0.5) -> np.ndarray:
    """(S, H, W) FLAIR, probability and truth -> one RGB row of the chosen slices."""
    prediction = probability > threshold
    tiles = []
    for z in chosen_slices(truth, prediction):
        tile = gray_rgb(flair[z])
        tile[contour(truth[z])] = TP
        tile[contour(prediction[z])] = FP
        tiles.append(tile)
    return np.concatenate(tiles, axis=1)
