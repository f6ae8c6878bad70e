"""A day-one EM submission's probabilities (the demo ranks it): the smoothed raw intensity as
cell probability (membranes are dark)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def smoothed_intensity(volume: np.ndarray) -> np.ndarray:
    """(slices, H, W) uint8 -> cell probability in [0, 1], smoothed within each slice."""
    smoothed: np.ndarray = ndimage.gaussian_filter(volume.astype(np.float32) / 255.0,
                                                   (0, 1, 1))
    return smoothed
