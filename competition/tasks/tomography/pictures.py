"""Pictures of tomography volumes and labels (pure: arrays in, RGB arrays out)."""

from __future__ import annotations

import numpy as np

from competition.formats.pictures import gray_rgb

COLOURS = np.array([(30, 30, 30), (90, 200, 255), (255, 70, 70)], np.uint8)  # matrix, fibre, pore


def label_rgb(labels: np.ndarray) -> np.ndarray:
    """Labels as colours: matrix dark, fibre blue, pore red."""
    out: np.ndarray = COLOURS[np.clip(np.asarray(labels), 0, len(COLOURS) - 1)]
    return out


def frame(image: np.ndarray, prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """One slice: image | predicted labels | true labels."""
    return np.concatenate([gray_rgb(image), label_rgb(prediction), label_rgb(truth)], axis=1)


def orthogonal(image: np.ndarray, labels: np.ndarray | None, gap: int = 4) -> np.ndarray:
    """The three central planes of a (z, y, x) volume: the z-slice (y, x), the y-slice (z, x)
    and the x-slice (z, y); grey on the top row, labels below (where given)."""
    z, y, x = (s // 2 for s in image.shape)
    planes = [(image[z], None if labels is None else labels[z]),
              (image[:, y], None if labels is None else labels[:, y]),
              (image[:, :, x], None if labels is None else labels[:, :, x])]
    height = max(p.shape[0] for p, _ in planes)
    # One grey scale for the three planes (each stretched alone would differ).
    low, high = np.percentile(np.concatenate([p.ravel() for p, _ in planes]), (0.5, 99.5))
    rows = []
    for k in range(1 if labels is None else 2):
        tiles = []
        for grey, lab in planes:
            tile = _grey(grey, low, high) if k == 0 else label_rgb(lab)  # type: ignore[arg-type]
            pad = np.full((height, tile.shape[1] + gap, 3), 255, np.uint8)
            pad[: tile.shape[0], : tile.shape[1]] = tile
            tiles.append(pad)
        rows.append(np.concatenate(tiles, axis=1))
        rows.append(np.full((gap, rows[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(rows[:-1], axis=0)


def _grey(image: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = np.clip((image.astype(np.float32) - low) / max(high - low, 1e-6), 0, 1)
    return np.repeat((scaled * 255).astype(np.uint8)[..., None], 3, -1)
