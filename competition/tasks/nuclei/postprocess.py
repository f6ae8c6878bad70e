"""From probability maps to nucleus instances, and the boundary target they are trained on
(pure)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed


def remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    sizes = np.bincount(labels.ravel())
    small = sizes < min_size
    small[0] = False
    out = labels.copy()
    out[small[labels]] = 0
    return out


def relabel_sequential(labels: np.ndarray) -> np.ndarray:
    ids = np.unique(labels)
    ids = ids[ids > 0]
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    lut[ids] = np.arange(1, len(ids) + 1)
    relabelled: np.ndarray = lut[labels]
    return relabelled


def instances_from_probabilities(foreground: np.ndarray, boundary: np.ndarray | None = None,
                                 fg_threshold: float = 0.5, marker_threshold: float = 0.5,
                                 min_size: int = 10, boundary_weight: float = 1.0
                                 ) -> np.ndarray:
    """Marker-controlled watershed: markers where the nucleus is certain and away from its
    boundary (foreground less `boundary_weight` times the boundary probability, above
    `marker_threshold`), flooded over the foreground along decreasing probability. A weight
    above 1 cuts markers apart where touching nuclei share a faint boundary (crowded
    fluorescence)."""
    mask = foreground > fg_threshold
    core = foreground - (boundary_weight * boundary if boundary is not None else 0)
    markers, _ = ndimage.label(core > marker_threshold)
    markers = remove_small(markers, max(min_size // 4, 1))
    # skimage is unannotated
    labels = watershed(-foreground, markers, mask=mask)  # type: ignore[no-untyped-call]
    return relabel_sequential(remove_small(labels, min_size))


def boundary_target(labels: np.ndarray, width: int = 2) -> np.ndarray:
    """Training target for the boundary channel: pixels of an object near another label."""
    eroded = ndimage.grey_erosion(labels, size=(width * 2 + 1,) * 2)
    dilated = ndimage.grey_dilation(labels, size=(width * 2 + 1,) * 2)
    target: np.ndarray = ((labels > 0)
                          & ((eroded != labels) | (dilated != labels))).astype(np.float32)
    return target
