"""From probability maps or masks to nucleus instances (pure)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
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
    return lut[labels]


def instances_from_probabilities(foreground: np.ndarray, boundary: np.ndarray | None = None,
                                 fg_threshold: float = 0.5, marker_threshold: float = 0.5,
                                 min_size: int = 10) -> np.ndarray:
    """Marker-controlled watershed: markers where the nucleus is certain and away from its
    boundary, flooded over the foreground along decreasing probability."""
    mask = foreground > fg_threshold
    core = foreground - (boundary if boundary is not None else 0)
    markers, _ = ndimage.label(core > marker_threshold)
    markers = remove_small(markers, max(min_size // 4, 1))
    labels = watershed(-foreground, markers, mask=mask)
    return relabel_sequential(remove_small(labels, min_size))


def instances_from_mask(mask: np.ndarray, min_distance: int = 4, min_size: int = 10,
                        opening: int = 1) -> np.ndarray:
    """Split a binary mask into touching nuclei: distance transform, peaks as markers,
    watershed (the classic OpenCV/scikit-image pipeline)."""
    if opening:
        mask = ndimage.binary_opening(mask, iterations=opening)
    distance = ndimage.distance_transform_edt(mask)
    components, _ = ndimage.label(mask)
    peaks = peak_local_max(distance, min_distance=min_distance, labels=components,
                           exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-distance, markers, mask=mask)
    return relabel_sequential(remove_small(labels, min_size))


def boundary_target(labels: np.ndarray, width: int = 2) -> np.ndarray:
    """Training target for the boundary channel: pixels of an object near another label."""
    eroded = ndimage.grey_erosion(labels, size=(width * 2 + 1,) * 2)
    dilated = ndimage.grey_dilation(labels, size=(width * 2 + 1,) * 2)
    return ((labels > 0) & ((eroded != labels) | (dilated != labels))).astype(np.float32)


def predictions_from_maps(task: str, maps, config: dict):
    """The submission-ready prediction from probability maps: nuclei {ImageId: (H, W, C)
    foreground[, boundary]} -> {ImageId: instance labels} by marker-controlled watershed;
    EM (slices, H, W) cell probabilities and landmark coordinates are the prediction already.
    The U-Net entries and ensembles share it: an ensemble post-processes exactly as its U-Net
    members do."""
    if task == "em":
        return np.clip(np.asarray(maps, dtype=np.float32), 0, 1)
    if task == "landmarks":  # coordinates are the prediction
        return maps
    return {image_id: instances_from_probabilities(
        m[..., 0].astype(np.float32), m[..., 1].astype(np.float32) if m.shape[-1] > 1 else None,
        config.get("fg_threshold", 0.5), config.get("marker_threshold", 0.5),
        config.get("min_size", 10)) for image_id, m in maps.items()}
