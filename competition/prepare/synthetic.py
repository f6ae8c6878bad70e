"""Synthetic source data, written in the same layouts as the real downloads.

The demo competitions run these through the real preparers, so the demo exercises exactly
the code path of the real data. Small and fast (seconds), yet with the difficulties that
matter: touching nuclei in three modalities, membranes with distracting dark organelles,
skull-like meshes whose landmarks sit on features.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image
from scipy import ndimage
from scipy.spatial import cKDTree

from competition.formats import em_tiff, meshes, nuclei_csv, rle

MODALITIES = ("fluorescence", "brightfield", "colour")


def _image_id(seed: int, k: int) -> str:
    return hashlib.sha256(f"demo-nuclei-{seed}-{k}".encode()).hexdigest()


def nuclei_image(rng: np.random.Generator, shape: tuple[int, int],
                 modality: str) -> tuple[np.ndarray, np.ndarray]:
    """An RGBA image and its label image: elliptical nuclei, some touching, never overlapping."""
    h, w = shape
    labels = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[:h, :w]
    n_target = int(rng.integers(6, 18))
    k = 0
    for _ in range(n_target * 4):
        if k == n_target:
            break
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(4, 10, 2)
        theta = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(theta) + dy * np.sin(theta)) / rx
        v = (-dx * np.sin(theta) + dy * np.cos(theta)) / ry
        inside = u**2 + v**2 <= 1
        if inside.sum() < 12:
            continue
        free = inside & (labels == 0)
        # Touching is fine (a shared border), a nucleus mostly hidden behind another is not.
        if free.sum() < 0.7 * inside.sum():
            continue
        k += 1
        labels[free] = k
    fg = labels > 0
    texture = ndimage.gaussian_filter(rng.normal(0, 1, shape), 2)
    brightness = np.zeros(shape)
    for lab in range(1, k + 1):
        brightness[labels == lab] = rng.uniform(0.55, 1.0)
    signal = ndimage.gaussian_filter(brightness + 0.08 * texture * fg, 1.0)
    noise = rng.normal(0, 0.04, shape)
    if modality == "fluorescence":
        gray = 0.05 + 0.8 * signal + noise
        rgb = np.stack([gray] * 3, -1)
    elif modality == "brightfield":
        gray = 0.85 - 0.55 * signal + noise
        rgb = np.stack([gray] * 3, -1)
    else:  # stained tissue: pink background, purple nuclei
        background = np.array([0.93, 0.72, 0.83]) + 0.05 * texture[..., None]
        nucleus = np.array([0.35, 0.2, 0.55])
        weight = np.clip(signal / max(signal.max(), 1e-6), 0, 1)[..., None]
        rgb = background * (1 - weight) + nucleus * weight + noise[..., None]
    rgba = np.concatenate([np.clip(rgb, 0, 1) * 255, np.full((h, w, 1), 255.0)], -1)
    return rgba.round().astype(np.uint8), labels


def write_nuclei_source(root: Path, seed: int, n_images: int = 60) -> None:
    """A Kaggle DSB 2018 layout: stage1_train/<id>/images/<id>.png + stage1_train_labels.csv."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_images):
        image_id = _image_id(seed, k)
        shape = (128, 128) if k % 4 else (96, 160)
        image, labels = nuclei_image(rng, shape, MODALITIES[k % 3])
        folder = root / "stage1_train" / image_id / "images"
        folder.mkdir(parents=True)
        Image.fromarray(image, "RGBA").save(folder / f"{image_id}.png")
        rows += [(image_id, enc) for enc in rle.encode_labels(labels)]
    (root / "stage1_train_labels.csv").write_bytes(
        nuclei_csv.write_csv(rows, nuclei_csv.SUBMISSION_HEADER))


def em_volume(rng: np.random.Generator, shape=(18, 192, 192),
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


def _field(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    """Smooth in-plane noise with unit standard deviation."""
    field = ndimage.gaussian_filter(rng.normal(0, 1, shape), (0, sigma, sigma))
    return field / field.std()


def write_em_source(root: Path, seed: int) -> None:
    """The ISBI 2012 layout: train-volume.tif and train-labels.tif."""
    raw, labels = em_volume(np.random.default_rng(seed))
    root.mkdir(parents=True, exist_ok=True)
    (root / "train-volume.tif").write_bytes(em_tiff.write_stack(raw))
    (root / "train-labels.tif").write_bytes(em_tiff.write_stack(labels))


# Unit directions of the landmark features on the template (bumps and ridges of a "skull").
_LANDMARK_DIRECTIONS = np.array([
    [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1],
    [1, 1, 1], [-1, 1, 1], [1, -1, 1], [-1, -1, 1], [0.3, 0.8, -0.5],
], dtype=np.float64)
_LANDMARK_DIRECTIONS /= np.linalg.norm(_LANDMARK_DIRECTIONS, axis=1, keepdims=True)


def skull_mesh(rng: np.random.Generator) -> tuple[trimesh.Trimesh, dict[str, np.ndarray]]:
    """An ellipsoid with a bump at each landmark direction, shape varying per specimen."""
    sphere = trimesh.creation.icosphere(subdivisions=4)
    axes = np.array([12.0, 8.0, 6.0]) * rng.uniform(0.9, 1.1, 3)
    heights = rng.uniform(0.8, 1.6, len(_LANDMARK_DIRECTIONS))
    wobble = rng.normal(0, 0.25, (3, 3))

    def deform(u: np.ndarray) -> np.ndarray:
        cos = u @ _LANDMARK_DIRECTIONS.T
        bumps = (heights * np.exp((cos - 1) / 0.02)).sum(axis=1)
        radial = 1 + 0.04 * np.einsum("ni,ij,nj->n", u, wobble, u)
        return u * axes * radial[:, None] + u * bumps[:, None]

    vertices = deform(np.asarray(sphere.vertices))
    mesh = trimesh.Trimesh(vertices, sphere.faces, process=False)
    points = deform(_LANDMARK_DIRECTIONS)
    # Specimens come roughly pre-aligned, as in the real data: a small residual pose.
    angle = rng.normal(0, 0.05, 3)
    pose = trimesh.transformations.euler_matrix(*angle)
    pose[:3, 3] = rng.normal(0, 0.5, 3)
    mesh.apply_transform(pose)
    points = points @ pose[:3, :3].T + pose[:3, 3]
    return mesh, {str(k + 1): p for k, p in enumerate(points)}


def write_landmarks_source(root: Path, seed: int, n_specimens: int = 12) -> None:
    """The SlicerMorph layout: Models/<name>.ply and LMs/<name>.mrk.json."""
    rng = np.random.default_rng(seed)
    (root / "Models").mkdir(parents=True)
    (root / "LMs").mkdir(parents=True)
    for k in range(n_specimens):
        mesh, points = skull_mesh(rng)
        name = f"strain_{k + 1:02d}"
        (root / "Models" / f"{name}.ply").write_bytes(meshes.write_mesh(mesh))
        (root / "LMs" / f"{name}.mrk.json").write_bytes(meshes.write_mrk_json(points))

