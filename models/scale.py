"""Object scale: measured from labels, estimated from an image, and images rescaled so that
objects have one canonical size (pure numpy/scipy/OpenCV).

A network trained on objects of about one size generalises across magnifications when every
image is brought to that size first: training images by their labelled objects' median
diameter, new images by an estimate from the image (a scale-normalised Laplacian-of-Gaussian
blob scale, calibrated on the training images against their labels) or, better, from a first
prediction's objects.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

MIN_FACTOR, MAX_FACTOR = 0.25, 4.0  # rescaling beyond these loses the image or the memory
_SIDE = 256  # the blob estimate runs on images downsampled to at most this side
_SIGMAS = np.geomspace(1.0, 24.0, 12)


def object_diameter(labels: np.ndarray) -> float | None:
    """Median equivalent diameter (px) of labelled objects; None without objects."""
    areas = np.bincount(np.asarray(labels).ravel())[1:]
    areas = areas[areas > 0]
    if not len(areas):
        return None
    return float(np.median(2 * np.sqrt(areas / np.pi)))


def blob_diameter(gray: np.ndarray) -> float:
    """Object diameter (px) estimated from a grey image with bright objects: the scale at
    which the scale-normalised Laplacian of Gaussian answers most on the brightest blobs
    (its 99.5th percentile), refined between scales."""
    gray = np.asarray(gray, np.float32)
    low, high = np.percentile(gray, (1, 99.5))
    norm = np.clip((gray - low) / max(float(high - low), 1e-6), 0, 1)
    factor = 1
    while max(norm.shape) / factor > _SIDE:
        factor *= 2
    if factor > 1:
        h, w = (norm.shape[0] // factor) * factor, (norm.shape[1] // factor) * factor
        norm = norm[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
    sigmas = np.maximum(_SIGMAS / factor, 0.7)
    response = np.array([np.percentile(-s * s * ndimage.gaussian_laplace(norm, s), 99.5)
                         for s in sigmas])
    k = int(np.argmax(response))
    log_sigma = float(np.log(sigmas[k]))
    if 0 < k < len(sigmas) - 1 and sigmas[k - 1] < sigmas[k] < sigmas[k + 1]:
        y0, y1, y2 = response[k - 1:k + 2]
        curvature = y0 - 2 * y1 + y2
        if curvature < 0:
            log_sigma += float((y0 - y2) / (2 * curvature)) * float(np.log(sigmas[k + 1]
                                                                             / sigmas[k]))
    return float(2 * np.sqrt(2) * np.exp(log_sigma) * factor)


def factor_for(diameter: float | None, canonical: float) -> float:
    """The zoom that brings objects of `diameter` to `canonical` px (1 when unknown)."""
    if not diameter or diameter <= 0:
        return 1.0
    return float(np.clip(canonical / diameter, MIN_FACTOR, MAX_FACTOR))


def resize(image: np.ndarray, shape: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """(H, W) or (H, W, C) to `shape` (h, w): nearest (labels, any dtype) or linear (area
    averaging when shrinking; float32 out)."""
    h, w = shape
    if image.shape[:2] == (h, w):
        return image
    if nearest:
        rows = np.minimum(((np.arange(h) + 0.5) * image.shape[0] / h).astype(int),
                          image.shape[0] - 1)
        cols = np.minimum(((np.arange(w) + 0.5) * image.shape[1] / w).astype(int),
                          image.shape[1] - 1)
        picked: np.ndarray = image[rows][:, cols]
        return picked
    shrink = h * w < image.shape[0] * image.shape[1]
    out = cv2.resize(np.asarray(image, np.float32), (w, h),
                     interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if image.ndim == 3 and out.ndim == 2:  # OpenCV drops a single channel
        out = out[..., None]
    resized: np.ndarray = out
    return resized


def zoomed_shape(shape: tuple[int, ...], factor: float) -> tuple[int, int]:
    return max(1, int(round(shape[0] * factor))), max(1, int(round(shape[1] * factor)))


def predicted_diameter(foreground: np.ndarray, boundary: np.ndarray | None = None,
                       threshold: float = 0.5) -> float | None:
    """Object diameter from prediction maps: connected cores (foreground minus boundary)
    above `threshold`, their median equivalent diameter, grown back by the boundary they
    lost (about one boundary width each side)."""
    core = foreground - (boundary if boundary is not None else 0) > threshold
    labels, n = ndimage.label(core)
    if n == 0:
        return None
    d = object_diameter(labels)
    if d is None:
        return None
    grown = float(((foreground > threshold).sum()) / max(int(core.sum()), 1))
    return d * float(np.sqrt(max(grown, 1.0)))
