"""Whole-image prediction by overlapping tiles, blended with a smooth window (pure).

Images are never squashed to a fixed size: they are cut into tiles, predicted, and the tiles'
outputs averaged with weights that fall off towards tile borders, where a fully convolutional
network sees least context.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _window(size: int) -> np.ndarray:
    ramp = np.hanning(size + 2)[1:-1]
    return np.outer(ramp, ramp).astype(np.float32) + 1e-3


def _starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step)) + [length - tile]
    return sorted(set(starts))


def predict_tiled(predict: Callable[[np.ndarray], np.ndarray], image: np.ndarray,
                  tile: int = 256, overlap: int = 64, batch: int = 4) -> np.ndarray:
    """`predict` maps a batch (n, tile, tile, C) to (n, tile, tile, K); returns (H, W, K)."""
    if image.ndim == 2:
        image = image[..., None]
    overlap = min(overlap, tile // 2)  # beyond half a tile, tiles would multiply
    h, w = image.shape[:2]
    pad_h, pad_w = max(tile - h, 0), max(tile - w, 0)
    padded = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect") \
        if pad_h or pad_w else image
    ph, pw = padded.shape[:2]
    step = max(tile - overlap, 1)
    corners = [(y, x) for y in _starts(ph, tile, step) for x in _starts(pw, tile, step)]
    window = _window(tile)[..., None]
    total: np.ndarray | None = None
    weight: np.ndarray | None = None
    for k in range(0, len(corners), batch):
        chunk = corners[k:k + batch]
        tiles = np.stack([padded[y:y + tile, x:x + tile] for y, x in chunk])
        out = np.asarray(predict(tiles), dtype=np.float32)
        if total is None or weight is None:  # both are set together, on the first batch
            total = np.zeros((ph, pw, out.shape[-1]), np.float32)
            weight = np.zeros((ph, pw, 1), np.float32)
        for (y, x), pred in zip(chunk, out, strict=True):
            total[y:y + tile, x:x + tile] += pred * window
            weight[y:y + tile, x:x + tile] += window
    assert total is not None and weight is not None  # there is always a first tile
    blended: np.ndarray = (total / weight)[:h, :w]
    return blended
