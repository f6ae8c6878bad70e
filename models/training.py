"""Training pieces the Keras baselines share: input channels, augmentation, patch sampling.

Augmentation (albumentations) is applied jointly to the image channels and the targets:
flips, 90-degree rotations and elastic deformation move both; brightness/contrast and Gaussian
noise touch only the intensity channels. Patches are sampled by a `keras.utils.PyDataset`
whose worker threads prepare the next batches while the model trains.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import albumentations as A
import cv2
import keras
import numpy as np

from models.unet import ARMS


def normalise(gray: np.ndarray, invert: bool = False,
              percentiles: tuple[float, float] = (1.0, 99.0)) -> np.ndarray:
    """Percentile contrast stretch to [0, 1]; optionally inverted (bright background).
    Where objects cover less of the image than 100 - the upper percentile, that percentile
    falls in the background and the stretch saturates the objects and amplifies their halo
    (StarDist and CSBDeep stretch between 1 and 99.8)."""
    numbers = (isinstance(percentiles, (list, tuple)) and len(percentiles) == 2
               and all(isinstance(p, (int, float)) and not isinstance(p, bool)
                       for p in percentiles))
    if not (numbers and 0 <= percentiles[0] < percentiles[1] <= 100):
        raise ValueError(f"percentiles: {percentiles!r} is not [low, high] with "
                         "0 <= low < high <= 100")
    gray = np.asarray(gray, np.float32)
    low, high = np.percentile(gray, percentiles)
    out: np.ndarray = np.clip((gray - low) / max(high - low, 1e-6), 0, 1)
    return 1 - out if invert else out


def arm_channels(raw: np.ndarray) -> np.ndarray:
    """The multi-arm U-Net's three inputs from a normalised image: raw, preprocessed (CLAHE)
    and its adaptive threshold, stacked as channels (H, W, 3)."""
    u8 = (raw * 255).astype(np.uint8)
    pre = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(u8)
    binary = cv2.adaptiveThreshold(pre, 1, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY,
                                   31, -2)
    return np.stack([raw, pre.astype(np.float32) / 255, binary.astype(np.float32)], -1)


def split_arms(batch: np.ndarray) -> dict[str, np.ndarray]:
    """A (n, h, w, 3) batch of arm channels as the multi-arm model's named inputs."""
    return {arm: batch[..., k:k + 1] for k, arm in enumerate(ARMS)}


def augmentation(elastic: bool = True) -> tuple[A.Compose, A.Compose]:
    """(geometric, photometric) pipelines. Elastic deformation with alpha in 100..300 and
    sigma in 10..15 px, chosen per sample."""
    geometric = [A.HorizontalFlip(), A.VerticalFlip(), A.RandomRotate90()]
    if elastic:
        geometric.append(A.OneOf([
            A.ElasticTransform(alpha=a, sigma=s, border_mode=cv2.BORDER_REFLECT_101)
            for a in (100, 200, 300) for s in (10, 12.5, 15)], p=0.5))
    photometric = [A.RandomBrightnessContrast(0.15, 0.15, p=0.5),
                   A.GaussNoise(std_range=(0.01, 0.05), p=0.3)]
    return A.Compose(geometric), A.Compose(photometric)


class PatchDataset(keras.utils.PyDataset):  # type: ignore[misc]  # keras is untyped
    """Random patches of (image channels, targets), augmented, `steps` batches per epoch.

    `images` are (H, W, C) in [0, 1] and `targets` (H, W, K), float32 or float16 (patches
    are float32); the first `photometric_channels` image channels get brightness/contrast/
    noise changes. `zoom` (low, high): each patch is cut at a random scale in that range
    (a larger region shrunk, or a smaller one enlarged, to `patch`).
    """

    def __init__(self, images: Sequence[np.ndarray], targets: Sequence[np.ndarray], patch: int,
                 batch_size: int, steps: int, augment: bool = True, elastic: bool = True,
                 photometric_channels: int = 1, arms: bool = False, seed: int = 0,
                 zoom: Sequence[float] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.images, self.targets = images, targets
        self.patch, self.batch_size, self.steps = patch, batch_size, steps
        self.zoom = (float(zoom[0]), float(zoom[1])) if zoom else None
        self.augment, self.photometric_channels, self.arms = augment, photometric_channels, arms
        self.geometric, self.photometric = augmentation(elastic)
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return self.steps

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def _crop(self, rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
        image, target = self.images[k], self.targets[k]
        h, w = image.shape[:2]
        p = self.patch
        z = float(np.exp(rng.uniform(*np.log(self.zoom)))) if self.zoom else 1.0
        c = max(int(round(p / z)), 8)  # the region cut, before zooming to the patch
        y, x = rng.integers(0, max(h - c, 0) + 1), rng.integers(0, max(w - c, 0) + 1)
        image = np.asarray(image[y:y + c, x:x + c], np.float32)
        target = np.asarray(target[y:y + c, x:x + c], np.float32)
        if image.shape[0] < c or image.shape[1] < c:  # small images: reflect-pad to the cut
            pad = ((0, c - image.shape[0]), (0, c - image.shape[1]), (0, 0))
            image, target = np.pad(image, pad, mode="reflect"), np.pad(target, pad, "reflect")
        if c != p:
            image = _resized(image, p)
            target = _resized(target, p)
        return image, target

    def __getitem__(self, index: int) -> tuple[np.ndarray | dict[str, np.ndarray], np.ndarray]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        xs, ys = [], []
        for _ in range(self.batch_size):
            image, target = self._crop(rng, int(rng.integers(len(self.images))))
            if self.augment:
                moved = self.geometric(image=image, mask=target)
                image, target = moved["image"], moved["mask"]
                c = self.photometric_channels
                image = image.copy()
                # Photometric transforms on 8-bit, their native type (albumentations' noise
                # is float64 and cannot be added to a float32 image by OpenCV).
                intensity = (np.clip(image[..., :c], 0, 1) * 255).astype(np.uint8)
                changed = self.photometric(image=intensity)["image"].reshape(intensity.shape)
                image[..., :c] = changed.astype(np.float32) / 255
            xs.append(image)
            ys.append(target)
        x, y = np.stack(xs).astype(np.float32), np.stack(ys).astype(np.float32)
        return (split_arms(x) if self.arms else x), y


def _resized(array: np.ndarray, size: int) -> np.ndarray:
    out = cv2.resize(array, (size, size), interpolation=cv2.INTER_LINEAR)
    resized: np.ndarray = out[..., None] if out.ndim == 2 else out
    return resized


def predict_batches(model: keras.Model, arms: bool) -> Callable[[np.ndarray], np.ndarray]:
    """A `predict` callable for `models.tiling.predict_tiled`."""
    def predict(tiles: np.ndarray) -> np.ndarray:
        out: np.ndarray = model.predict_on_batch(split_arms(tiles) if arms else tiles)
        return out
    return predict
