"""A synthetic LGG source in the Kaggle layout (the demo runs the real preparer on it):
a few small 3-channel brain volumes from three institutions, each with an ellipsoidal FLAIR
abnormality (one patient has none), in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

INSTITUTIONS = ("CS", "DU", "HT")


def brain_volume(rng: np.random.Generator, size: int, n_slices: int,
                 lesion: bool) -> tuple[np.ndarray, np.ndarray]:
    """(S, H, W, 3) uint8 (pre-contrast, FLAIR, post-contrast) and (S, H, W) bool."""
    z, y, x = np.meshgrid(np.linspace(-1, 1, n_slices), np.linspace(-1, 1, size),
                          np.linspace(-1, 1, size), indexing="ij")
    head = (y / 0.85) ** 2 + (x / 0.7) ** 2 + (z / 1.15) ** 2 < 1
    brain = (y / 0.78) ** 2 + (x / 0.63) ** 2 + (z / 1.05) ** 2 < 1
    mask = np.zeros(head.shape, bool)
    if lesion:
        centre = rng.uniform([-0.3, -0.35, -0.3], [0.3, 0.35, 0.3])
        radii = rng.uniform([0.35, 0.15, 0.15], [0.6, 0.3, 0.3])
        wobble = ndimage.gaussian_filter(rng.normal(0, 1, head.shape), 2) * 0.8
        r = ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + \
            ((x - centre[2]) / radii[2]) ** 2
        mask = (r + wobble < 1) & brain
    texture = ndimage.gaussian_filter(rng.normal(0, 1, head.shape), (0, 1.5, 1.5))
    base = 0.15 * head + 0.35 * brain + 0.05 * texture
    channels = [base + 0.05 * mask, base + 0.35 * mask, base + 0.1 * mask + 0.1 * (texture > 1.5)]
    noise = [rng.normal(0, 0.03, head.shape) for _ in range(3)]
    stack = np.stack([np.clip(c + n, 0, 1) for c, n in zip(channels, noise, strict=True)], -1)
    return (stack * 255).round().astype(np.uint8), mask


def write_lgg_source(root: Path, seed: int, n_patients: int = 9, size: int = 64) -> None:
    """`kaggle_3m/TCGA_<inst>_<id>_<date>/<case>_<n>.tif` and `_mask.tif`, n from 1."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "kaggle_3m"
    for k in range(n_patients):
        case = f"TCGA_{INSTITUTIONS[k % len(INSTITUTIONS)]}_{7000 + k:04d}_1999{k % 9 + 1:02d}01"
        n_slices = int(rng.integers(10, 15))
        images, masks = brain_volume(rng, size, n_slices, lesion=k != 1)
        (folder / case).mkdir(parents=True, exist_ok=True)
        for z in range(n_slices):
            tifffile.imwrite(folder / case / f"{case}_{z + 1}.tif", images[z])
            tifffile.imwrite(folder / case / f"{case}_{z + 1}_mask.tif",
                             (masks[z] * 255).astype(np.uint8))
