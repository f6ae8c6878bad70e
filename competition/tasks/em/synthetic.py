"""A synthetic ISBI 2012 source, written in the real layout (the demo runs the real preparer on
it): membranes with distracting dark organelles, in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from competition.formats import em_tiff
from competition.tasks.base import refuse_spec


def em_volume(rng: np.random.Generator, shape: tuple[int, int, int] = (18, 192, 192),
              n_cells: int = 150) -> tuple[np.ndarray, np.ndarray]:
    """Serial-section-like EM: 3D Voronoi cells cut into slices, dark membranes about 20 % of
    pixels, dark organelles inside cells as distractors. Returns (raw, labels 0/255)."""
    depth, h, w = shape
    z_step = 6.0  # sections are much thicker than a pixel is wide
    seeds = rng.uniform([0, 0, 0], [depth * z_step, h, w], (n_cells, 3))
    zz, yy, xx = np.meshgrid(np.arange(depth) * z_step, np.arange(h), np.arange(w),
                             indexing="ij")
    jitter = ndimage.gaussian_filter(rng.normal(0, 1, (2, *shape)), (0, 0, 6, 6)) * 40
    coords = np.stack([zz.ravel(), (yy + jitter[0]).ravel(), (xx + jitter[1]).ravel()], 1)
    cell = cKDTree(seeds).query(coords)[1].reshape(shape)
    boundary = np.zeros(shape, bool)
    boundary[:, 1:, :] |= cell[:, 1:, :] != cell[:, :-1, :]
    boundary[:, :, 1:] |= cell[:, :, 1:] != cell[:, :, :-1]
    membrane = ndimage.binary_dilation(boundary, np.ones((1, 3, 3), bool))
    labels = np.where(membrane, 0, 255).astype(np.uint8)
    # Membrane contrast varies along the membrane (faint, even broken, where sections cut it
    # obliquely); dark organelles and vesicles inside cells look like membrane; illumination
    # is uneven.
    contrast = np.clip(0.3 + 0.12 * _field(rng, shape, 8), 0.08, 0.5)
    organelles = _field(rng, shape, 2.5) > 1.6
    vesicles = ndimage.binary_dilation(rng.random(shape) < 0.002, np.ones((1, 3, 3), bool))
    organelles = (organelles | vesicles) & ~ndimage.binary_dilation(membrane,
                                                                     np.ones((1, 5, 5), bool))
    raw = (0.7 + 0.05 * _field(rng, shape, 1.5) + 0.06 * _field(rng, shape, 40)
           - contrast * membrane - 0.3 * organelles)
    raw = ndimage.gaussian_filter(raw, (0, 1.2, 1.2)) + rng.normal(0, 0.08, shape)
    return (np.clip(raw, 0, 1) * 255).round().astype(np.uint8), labels


def _field(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Smooth in-plane noise with unit standard deviation."""
    field: np.ndarray = ndimage.gaussian_filter(rng.normal(0, 1, shape), (0, sigma, sigma))
    unit: np.ndarray = field / field.std()
    return unit


def write_em_source(root: Path, seed: int, spec: str | None = None) -> None:
    """The ISBI 2012 layout: train-volume.tif and train-labels.tif."""
    refuse_spec(spec, "the synthetic EM stack")
    raw, labels = em_volume(np.random.default_rng(seed))
    root.mkdir(parents=True, exist_ok=True)
    (root / "train-volume.tif").write_bytes(em_tiff.write_stack(raw))
    (root / "train-labels.tif").write_bytes(em_tiff.write_stack(labels))
