"""What a nuclei image looks like, in a few numbers, and the image type they give (pure).

The 2018 Data Science Bowl's stage-1 test images are not drawn like its training images: the
same three modalities, but other magnifications, more crowded tissue and stains the training
set lacks. An `Appearance` describes one image by what can be seen without labels (so that
training and test images are described alike): its size, modality, brightness and colour, the
nucleus diameter estimated from the image (a blob-scale estimate), and from an Otsu mask the
share of nucleus pixels, how much of it lies in clumps (touching nuclei), the contrast of
nuclei against the background noise and the background's texture. Where labels are known they
add the measured diameter and share, to check the estimates against (see
benchmarks/dsb_protocol.py), never to type an image: a type must mean the same on both sides
of a comparison.

Types (`image_type`), in the order of `TYPES`:
- `fluorescence-small`: dark background, nuclei under 24 px across, few clumps;
- `fluorescence-crowded`: dark background, at least 30 % of the nucleus pixels in clumps
  larger than two nuclei (tissue sections, confluent cells: touching nuclei to split);
- `fluorescence-large`: dark background, nuclei 24 px across or more, few clumps;
- `brightfield`: grey, bright background, dark nuclei;
- `stained`: colour (H&E and other stains).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

TYPES = ("fluorescence-small", "fluorescence-crowded", "fluorescence-large", "brightfield",
         "stained")
LARGE_DIAMETER = 24.0  # px: above it, a fluorescence image's nuclei are "large"
CROWDED_CLUMPS = 0.30  # share of nucleus pixels in clumps from which an image is "crowded"
CLUMP_NUCLEI = 2.0  # a clump: a connected region larger than this many nuclei (by diameter)
MAX_CONTRAST = 1000.0  # contrast is capped: a noiseless background would make it infinite
COLOUR_CUT = 4.0  # mean |R - G| + |G - B| (8-bit) above which an image is stained colour

# The blob-scale estimate works on images of at most this side (downsampled by powers of 2):
# a nucleus stays several pixels wide and one image takes tens of milliseconds.
_SCALE_SIDE = 256
_SIGMAS = 12  # Laplacian-of-Gaussian scales tried, geometric from 1 to 24 px
_PEAK_PERCENTILE = 99.5  # of the scale-normalised response: the nuclei, not the background


@dataclass(frozen=True)
class Appearance:
    height: int
    width: int
    modality: str  # fluorescence, brightfield or colour (the stratum of the random split)
    brightness: float  # mean grey level, 0..255
    colour: float  # mean |R - G| + |G - B|, 0 for grey images
    diameter: float  # estimated nucleus diameter (px), from the image alone
    foreground: float  # estimated share of nucleus pixels, from the image alone
    clumped: float  # share of those pixels in clumps (regions of more than two nuclei)
    contrast: float  # (nuclei - background) / the background's noise (robust), capped
    texture: float  # the background's spread relative to the nuclei's contrast
    label_diameter: float | None = None  # median equivalent diameter of labelled nuclei
    label_foreground: float | None = None  # share of labelled pixels
    n_nuclei: int | None = None

    @property
    def type(self) -> str:
        return image_type(self)

    def vector(self) -> np.ndarray:
        """What two images of one type are compared on (before standardising): nucleus
        scale, crowding, clumps, contrast, background texture, brightness and colour (what
        makes nuclei hard to find and to split; the image size is a crop's, not the
        nuclei's, and left out)."""
        return np.array([np.log(max(self.diameter, 1.0)), self.foreground, self.clumped,
                         np.log(max(self.contrast, 1.0)), self.texture,
                         self.brightness / 255, self.colour / 32], np.float64)

    def as_row(self) -> dict[str, Any]:
        return {**asdict(self), "type": self.type}


def modality(rgb: np.ndarray) -> str:
    """colour (stained tissue), brightfield (light background) or fluorescence (dark
    background): the rule the random split has always been stratified by."""
    rgb = np.asarray(rgb, np.int16)
    if colour_of(rgb) > COLOUR_CUT:
        return "colour"
    return "brightfield" if rgb.mean() > 127 else "fluorescence"


def source(rgb: np.ndarray) -> str:
    """The acquisition set an image most likely comes from, seen without labels: its size
    and modality (the data set's experiments each crop one microscope's frames to one size;
    the stage-1 test's sets are mostly of sizes the training set lacks)."""
    return f"{rgb.shape[0]}x{rgb.shape[1]} {modality(rgb)}"


def colour_of(rgb: np.ndarray) -> float:
    rgb = np.asarray(rgb, np.int16)
    return float(np.abs(rgb[..., 0] - rgb[..., 1]).mean()
                 + np.abs(rgb[..., 1] - rgb[..., 2]).mean())


def nuclei_bright(rgb: np.ndarray, kind: str | None = None) -> np.ndarray:
    """A grey image with nuclei bright: fluorescence as it is, the others as optical density
    (-log of the transmitted light), where absorbing nuclei are bright."""
    f = np.asarray(rgb, np.float32)
    if (kind or modality(rgb)) == "fluorescence":
        gray: np.ndarray = f.mean(axis=-1)
        return gray
    density: np.ndarray = -np.log((f + 1) / 256).mean(axis=-1)
    return density


def _downsampled(gray: np.ndarray) -> tuple[np.ndarray, int]:
    factor = 1
    while max(gray.shape) / factor > _SCALE_SIDE:
        factor *= 2
    if factor == 1:
        return gray, 1
    h, w = (gray.shape[0] // factor) * factor, (gray.shape[1] // factor) * factor
    small = gray[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
    return small, factor


def blob_diameter(gray: np.ndarray) -> float:
    """The nucleus diameter (px) from the image alone: the scale at which the
    scale-normalised Laplacian of Gaussian answers most strongly on the brightest blobs
    (Lindeberg's scale selection; a disc of radius r answers most at sigma = r / sqrt(2)).
    Within 0.97-1.18x of the labelled diameter for half the DSB training images (median
    1.07x); off by 2-5x on bright-field images, where whole cells are blobs too."""
    gray = np.asarray(gray, np.float32)
    low, high = np.percentile(gray, (1, 99.5))
    norm = np.clip((gray - low) / max(float(high - low), 1e-6), 0, 1)
    small, factor = _downsampled(norm)
    sigmas = np.geomspace(max(0.7, 1.0 / factor), 24.0 / factor, _SIGMAS)
    response = np.array([np.percentile(-s * s * ndimage.gaussian_laplace(small, s),
                                       _PEAK_PERCENTILE) for s in sigmas])
    k = int(np.argmax(response))
    log_sigma = float(np.log(sigmas[k]))
    if 0 < k < len(sigmas) - 1:  # parabolic refinement between the tried scales
        y0, y1, y2 = response[k - 1:k + 2]
        curvature = y0 - 2 * y1 + y2
        if curvature < 0:
            step = float(np.log(sigmas[1] / sigmas[0]))
            log_sigma += float((y0 - y2) / (2 * curvature)) * step
    return float(2 * np.sqrt(2) * np.exp(log_sigma) * factor)


@dataclass(frozen=True)
class MaskStats:
    foreground: float
    clumped: float
    contrast: float
    texture: float


def mask_stats(gray: np.ndarray, diameter: float) -> MaskStats:
    """From Otsu's threshold of the smoothed image (specks opened away): the share of
    nucleus pixels, the share of them in clumps (connected regions larger than
    `CLUMP_NUCLEI` discs of `diameter`), the nuclei's contrast against the background's
    robust noise (median absolute deviation) and the background's texture (its standard
    deviation over the nucleus-background gap)."""
    smooth = ndimage.gaussian_filter(np.asarray(gray, np.float32), 1)
    if float(smooth.max()) <= float(smooth.min()):
        return MaskStats(0.0, 0.0, 0.0, 0.0)
    # skimage is unannotated
    mask = ndimage.binary_opening(smooth > threshold_otsu(smooth))  # type: ignore[no-untyped-call]
    inside, outside = smooth[mask], smooth[~mask]
    if not inside.size or not outside.size:
        return MaskStats(float(mask.mean()), 0.0, 0.0, 0.0)
    regions, _ = ndimage.label(mask)
    areas = np.bincount(regions.ravel())[1:]
    disc = np.pi * (max(diameter, 1.0) / 2) ** 2
    clumped = float(areas[areas > CLUMP_NUCLEI * disc].sum() / max(int(areas.sum()), 1))
    background = float(np.median(outside))
    gap = float(np.median(inside)) - background
    noise = 1.4826 * float(np.median(np.abs(outside - background)))
    contrast = min(gap / noise, MAX_CONTRAST) if noise > 0 else MAX_CONTRAST
    texture = float(outside.std()) / gap if gap > 0 else 0.0
    return MaskStats(float(mask.mean()), clumped, float(max(contrast, 0.0)), texture)


def label_diameter(labels: np.ndarray) -> tuple[float | None, float, int]:
    """Median equivalent diameter of labelled objects (None without any), their pixel share
    and count."""
    areas = np.bincount(np.asarray(labels).ravel())[1:]
    areas = areas[areas > 0]
    share = float((np.asarray(labels) > 0).mean())
    if not len(areas):
        return None, share, 0
    return float(np.median(2 * np.sqrt(areas / np.pi))), share, int(len(areas))


def describe(rgb: np.ndarray, labels: np.ndarray | None = None) -> Appearance:
    """An image's appearance (RGB uint8 (H, W, 3)); with its labels, their measured scale."""
    rgb = np.asarray(rgb)[..., :3]
    kind = modality(rgb)
    gray = nuclei_bright(rgb, kind)
    measured: dict[str, Any] = {}
    if labels is not None:
        diameter, share, count = label_diameter(labels)
        measured = {"label_diameter": diameter, "label_foreground": share, "n_nuclei": count}
    diameter = blob_diameter(gray)
    stats = mask_stats(gray, diameter)
    return Appearance(
        height=int(rgb.shape[0]), width=int(rgb.shape[1]), modality=kind,
        brightness=float(np.asarray(rgb, np.float32).mean()), colour=colour_of(rgb),
        diameter=diameter, foreground=stats.foreground, clumped=stats.clumped,
        contrast=stats.contrast, texture=stats.texture, **measured)


def image_type(a: Appearance) -> str:
    """One of `TYPES` (see the module's docstring)."""
    if a.modality == "colour":
        return "stained"
    if a.modality == "brightfield":
        return "brightfield"
    if a.clumped >= CROWDED_CLUMPS:
        return "fluorescence-crowded"
    return "fluorescence-large" if a.diameter >= LARGE_DIAMETER else "fluorescence-small"
