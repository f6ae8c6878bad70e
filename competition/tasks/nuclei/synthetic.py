"""A synthetic DSB 2018 source, written in the real layout (the demo runs the real preparer on
it): touching nuclei in three modalities, in seconds."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from competition.formats import nuclei_csv, rle
from competition.tasks.base import refuse_spec

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


def write_nuclei_source(root: Path, seed: int, n_images: int = 60, *,
                        spec: str | None = None) -> None:
    """A Kaggle DSB 2018 layout: stage1_train/<id>/images/<id>.png + stage1_train_labels.csv."""
    refuse_spec(spec, "the synthetic nuclei source")
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
