"""A 2D U-Net over the slices of volumes (multi-channel MRI), optionally 2.5D, trained with
regional losses and, optionally, Kervadec's boundary loss.

Task-agnostic: volumes are (S, H, W, C) uint8 arrays (channels such as pre-contrast, FLAIR,
post-contrast) with (S, H, W) binary masks. The network sees one slice at a time: the chosen
channels of that slice and, with `context` k > 0, of its k neighbours on each side (2.5D;
neighbours past the volume's ends repeat the end slice). Volumes are contrast-stretched per
case and channel and kept as 8 bits; the signed distance maps of the boundary loss are
computed once per slice before training (not per step) and kept as float16.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
from scipy import ndimage

from models.losses import combined, with_boundary
from models.snapshots import snapshot_callback
from models.unet import build_unet

CHANNELS = {"flair": [1], "all": [0, 1, 2]}


@dataclass
class SliceTrained:
    model: keras.Model
    config: dict[str, Any]
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    images_per_second: float = 0.0


def case_normalise(volume: np.ndarray) -> np.ndarray:
    """Each channel stretched from its 1st to 99th percentile over the case's non-zero
    voxels (the head) to 0..255, as uint8 (S, H, W, C)."""
    volume = np.asarray(volume)
    out = np.zeros(volume.shape, np.uint8)
    for c in range(volume.shape[-1]):
        channel = volume[..., c].astype(np.float32)
        inside = channel[channel > 0]
        if inside.size == 0:
            continue
        low, high = np.percentile(inside, (1, 99))
        out[..., c] = (np.clip((channel - low) / max(high - low, 1e-6), 0, 1) * 255).round()
    return out


def slice_input(volume: np.ndarray, z: int, channels: Sequence[int], context: int) -> np.ndarray:
    """(H, W, len(channels) * (2 context + 1)) float32 in [0, 1]: slices z - context ..
    z + context (clamped at the ends), each with the chosen channels."""
    picks = [min(max(z + d, 0), len(volume) - 1) for d in range(-context, context + 1)]
    stack = volume[picks][..., list(channels)]  # (n, H, W, c)
    return np.moveaxis(stack, 0, 2).reshape(*stack.shape[1:3], -1).astype(np.float32) / 255


def signed_distance(mask: np.ndarray, spacing: Sequence[float] = (1.0, 1.0)) -> np.ndarray:
    """Kervadec's signed distance map of one slice: the distance to the object outside it,
    minus the distance to the background (less one pixel) inside it; zero when the slice has
    no object."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return np.zeros(mask.shape, np.float32)
    outside = ndimage.distance_transform_edt(~mask, sampling=spacing)
    inside = ndimage.distance_transform_edt(mask, sampling=spacing)
    out: np.ndarray = (outside * ~mask - (inside - 1) * mask).astype(np.float32)
    return out


def fill_channels(x: np.ndarray, channels: Sequence[int], fill: int) -> np.ndarray:
    """A slice input (H, W, n * len(channels)) made to look like a case in which only
    channel `fill` was acquired: each slice's other channels become copies of its `fill`
    channel, as data sets store a sequence that was not acquired (LGG: FLAIR in place of
    pre- and post-contrast). Normalising per case and channel keeps the copy exact:
    identical raw channels normalise alike."""
    channels = list(channels)
    c = len(channels)
    out = x.reshape(*x.shape[:2], -1, c).copy()
    out[...] = out[..., channels.index(fill)][..., None]
    return out.reshape(x.shape)


def check_missing_channels(config: dict[str, Any]) -> None:
    """`missing_channels` is a share, applied in training (`augment`), and `missing_fill`
    is one of several chosen channels: otherwise the setting would change nothing."""
    share = float(config.get("missing_channels") or 0.0)
    if not share:
        return
    channels = CHANNELS[config["channels"]]
    fill = config.get("missing_fill", 1)
    if not 0 < share <= 1:
        raise ValueError(f"missing_channels: {share} is not a share in (0, 1]")
    if not config.get("augment"):
        raise ValueError("missing_channels: applies to augmented training (augment: true)")
    if len(channels) == 1:
        raise ValueError(f"missing_channels: channels: {config['channels']} has one channel, "
                         "none to replace")
    if fill not in channels:
        raise ValueError(f"missing_fill: {fill} is not one of the channels {channels}")


def crop_window(shape: Sequence[int], size: int, around: np.ndarray,
                rng: np.random.Generator) -> tuple[int, int]:
    """The top-left corner of a `size` x `size` window inside an image of `shape` (H, W)
    that holds one of the `around` pixels ((N, 2) rows, columns; none: anywhere), drawn at a
    random place in the window (then moved inside the image, which keeps the pixel in)."""
    h, w = int(shape[0]), int(shape[1])
    if len(around):
        r, c = around[int(rng.integers(len(around)))]
        top = int(r) - int(rng.integers(size))
        left = int(c) - int(rng.integers(size))
    else:
        top, left = int(rng.integers(max(h - size, 0) + 1)), int(rng.integers(max(w - size, 0) + 1))
    return min(max(top, 0), max(h - size, 0)), min(max(left, 0), max(w - size, 0))


def random_affine(x: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                  zoom: tuple[float, float] | None, rotate: float) -> tuple[np.ndarray, np.ndarray]:
    """The slice and its targets zoomed by a factor drawn log-uniformly in `zoom` and turned
    by an angle drawn in +-`rotate` degrees about the centre (bilinear; the labels
    thresholded back to 0/1, a signed distance channel scaled with the zoom)."""
    import cv2

    scale = float(np.exp(rng.uniform(*np.log(zoom)))) if zoom else 1.0
    angle = float(rng.uniform(-rotate, rotate)) if rotate else 0.0
    h, w = x.shape[:2]
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, scale)

    def warp(channel: np.ndarray, border: int) -> np.ndarray:
        out: np.ndarray = cv2.warpAffine(np.ascontiguousarray(channel, np.float32), matrix,
                                         (w, h), flags=cv2.INTER_LINEAR, borderMode=border)
        return out

    x = np.stack([warp(x[..., c], cv2.BORDER_CONSTANT) for c in range(x.shape[-1])], -1)
    labels = (warp(y[..., 0], cv2.BORDER_CONSTANT) > 0.5).astype(np.float32)
    rest = [warp(y[..., c], cv2.BORDER_REPLICATE) * scale for c in range(1, y.shape[-1])]
    return x, np.stack([labels, *rest], -1)


class SliceDataset(keras.utils.PyDataset):  # type: ignore[misc]  # keras is untyped
    """Batches of slices: `positive_fraction` of them drawn among slices with an object
    (the rest among all), flipped and rotated by multiples of 90 degrees with their targets,
    with a small brightness and contrast change. With `crop` (pixels), each is a square
    window of the slice instead of the whole: around an object pixel for a slice drawn for
    its object, around a head pixel (non-zero input) otherwise. The network is fully
    convolutional, so it still predicts whole slices; a 128 px window costs a quarter of a
    256 px slice, so the same time sees four times as many. With `augment` and `zoom`
    (low, high) or `rotate` (degrees), each slice is first zoomed and turned at random
    (`random_affine`): heads differ in size and pose between patients and sites. With
    `augment` and `missing_channels` (a share), that share of slices is shown as a case
    with channel `missing_fill` alone (`fill_channels`)."""

    def __init__(self, volumes: Sequence[np.ndarray], targets: Sequence[np.ndarray],
                 channels: Sequence[int], context: int, batch_size: int, steps: int,
                 positive_fraction: float, augment: bool, seed: int, crop: int | None = None,
                 zoom: Sequence[float] | None = None, rotate: float = 0.0,
                 missing_channels: float = 0.0, missing_fill: int = 1,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.volumes, self.targets = volumes, targets
        self.channels, self.context = list(channels), context
        self.batch_size, self.steps = batch_size, steps
        self.positive_fraction, self.augment, self.seed = positive_fraction, augment, seed
        self.crop = int(crop) if crop else None
        self.zoom = (float(zoom[0]), float(zoom[1])) if zoom else None
        self.rotate = float(rotate or 0.0)
        self.missing_channels = float(missing_channels or 0.0)
        self.missing_fill = int(missing_fill)
        self.all = [(k, z) for k, v in enumerate(volumes) for z in range(len(v))]
        self.positive = [(k, z) for k, z in self.all if targets[k][z, ..., 0].any()]
        self.epoch = 0

    def __len__(self) -> int:
        return self.steps

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        xs, ys = [], []
        for _ in range(self.batch_size):
            pool = self.positive if self.positive and \
                rng.random() < self.positive_fraction else self.all
            positive = pool is self.positive
            k, z = pool[int(rng.integers(len(pool)))]
            x = slice_input(self.volumes[k], z, self.channels, self.context)
            y = self.targets[k][z].astype(np.float32)
            # Drawn only when set: recipes without it keep their random stream.
            if self.augment and self.missing_channels and rng.random() < self.missing_channels:
                x = fill_channels(x, self.channels, self.missing_fill)
            if self.augment and (self.zoom or self.rotate):
                x, y = random_affine(x, y, rng, self.zoom, self.rotate)
            if self.crop is not None:
                where = y[..., 0] > 0 if positive else self.volumes[k][z].any(axis=-1)
                top, left = crop_window(y.shape, self.crop, np.argwhere(where), rng)
                x = x[top:top + self.crop, left:left + self.crop]
                y = y[top:top + self.crop, left:left + self.crop]
            if self.augment:
                square = x.shape[0] == x.shape[1]  # quarter turns keep a square's shape
                turns = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
                x, y = np.rot90(x, turns), np.rot90(y, turns)
                if rng.random() < 0.5:
                    x, y = x[:, ::-1], y[:, ::-1]
                x = np.clip(x * rng.uniform(0.9, 1.1) + rng.uniform(-0.05, 0.05), 0, 1)
            xs.append(np.ascontiguousarray(x))
            ys.append(np.ascontiguousarray(y))
        return np.stack(xs).astype(np.float32), np.stack(ys).astype(np.float32)


def check_crop(config: dict[str, Any], volumes: Sequence[np.ndarray]) -> None:
    """`crop` fits the network (a multiple of 2**depth) and every slice."""
    crop = config.get("crop")
    if not crop:
        return
    unit = 2 ** int(config["depth"])
    if int(crop) % unit:
        raise ValueError(f"crop: {crop} is not a multiple of 2**depth = {unit}")
    smallest = min(min(v.shape[1:3]) for v in volumes)
    if int(crop) > smallest:
        raise ValueError(f"crop: {crop} is larger than the smallest slice side ({smallest})")


def training_targets(masks: Sequence[np.ndarray], spacing: Sequence[Sequence[float]],
                     boundary: bool) -> list[np.ndarray]:
    """(S, H, W, 1) labels, or (S, H, W, 2) labels and signed distances (float16), computed
    here once for all of training."""
    out = []
    for mask, step in zip(masks, spacing, strict=True):
        labels = np.asarray(mask, np.float16)[..., None]
        if boundary:
            distance = np.stack([signed_distance(m, step[:2]) for m in mask])
            labels = np.concatenate([labels, distance.astype(np.float16)[..., None]], -1)
        out.append(labels)
    return out


class BoundaryWeight(keras.callbacks.Callback):  # type: ignore[misc]  # keras is untyped
    """Raises the boundary term's weight by `step` after each epoch, up to `top`."""

    def __init__(self, weight: Any, step: float, top: float):
        super().__init__()
        self.weight, self.step, self.top = weight, step, top

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.weight.assign(min(self.top, (epoch + 1) * self.step))


def learning_rate(config: dict[str, Any]) -> Any:
    """Adam's learning rate: constant, or (`lr_schedule: cosine`) decayed along a cosine
    from `learning_rate` to 1 % of it over all training steps, so that the last weights,
    which are the ones kept, come from a settled optimiser rather than a noisy one."""
    schedule = config.get("lr_schedule", "constant")
    if schedule == "constant":
        return float(config["learning_rate"])
    if schedule == "cosine":
        steps = int(config["epochs"]) * int(config["steps_per_epoch"])
        return keras.optimizers.schedules.CosineDecay(float(config["learning_rate"]),
                                                      decay_steps=max(steps, 1), alpha=0.01)
    raise ValueError(f"lr_schedule: {schedule!r} is not one of constant, cosine")


def fit(volumes: Sequence[np.ndarray], masks: Sequence[np.ndarray],
        spacing: Sequence[Sequence[float]], config: dict[str, Any],
        on_epoch: Callable[..., None] | None = None) -> SliceTrained:
    keras.utils.set_random_seed(config["seed"])
    keras.mixed_precision.set_global_policy(
        "mixed_float16" if config.get("mixed_precision") else "float32")
    channels = CHANNELS[config["channels"]]
    context = int(config["context"])
    check_crop(config, volumes)
    check_missing_channels(config)
    names = list(config["loss"])
    boundary = "boundary" in names
    normalised = [case_normalise(v) for v in volumes]
    targets = training_targets(masks, spacing, boundary)
    model = build_unet(in_channels=len(channels) * (2 * context + 1), out_channels=1,
                       depth=config["depth"], base_filters=config["base_filters"],
                       batch_norm=config["batch_norm"], dropout=config["dropout"])
    callbacks: list[Any] = []
    if boundary:
        weight = keras.Variable(0.0, trainable=False, name="boundary_weight")
        loss = with_boundary(names, weight, bool(config.get("boundary_rebalance", False)))
        callbacks.append(BoundaryWeight(weight, float(config["boundary_step"]),
                                        float(config["boundary_max"])))
    else:
        loss = combined(names, weighted=False)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate(config)), loss=loss,
                  jit_compile=config.get("jit_compile", "auto"))
    dataset = SliceDataset(normalised, targets, channels, context, config["batch_size"],
                           config["steps_per_epoch"], config["positive_fraction"],
                           config["augment"], config["seed"], crop=config.get("crop"),
                           zoom=config.get("zoom"), rotate=config.get("rotate", 0.0),
                           missing_channels=config.get("missing_channels", 0.0),
                           missing_fill=config.get("missing_fill", 1),
                           workers=config["workers"],
                           use_multiprocessing=False)
    trained = SliceTrained(model, config)
    if on_epoch is not None:  # the model so far goes with an epoch's logs (snapshots)
        callbacks.append(snapshot_callback(on_epoch, trained, config))
    start = time.perf_counter()
    history = model.fit(dataset, epochs=config["epochs"], verbose=config["verbose"],
                        callbacks=callbacks)
    trained.seconds = time.perf_counter() - start
    trained.history = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    seen = config["epochs"] * config["steps_per_epoch"] * config["batch_size"]
    trained.images_per_second = seen / max(trained.seconds, 1e-9)
    return trained


def predict(trained: SliceTrained, volume: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """(S, H, W) float32 probabilities of one volume, slice by slice (padded to a multiple of
    2**depth by reflection, then cropped back)."""
    config = trained.config
    channels, context = CHANNELS[config["channels"]], int(config["context"])
    normalised = case_normalise(volume)
    s, h, w = normalised.shape[:3]
    unit = 2 ** int(config["depth"])
    pad = ((0, (-h) % unit), (0, (-w) % unit), (0, 0))
    out = np.zeros((s, h, w), np.float32)
    for start in range(0, s, batch_size):
        # Always a full batch (the last slice repeated): one traced shape, not one per size.
        zs = [min(z, s - 1) for z in range(start, start + batch_size)]
        batch = np.stack([np.pad(slice_input(normalised, z, channels, context), pad,
                                 mode="reflect") for z in zs])
        probability = np.asarray(trained.model.predict_on_batch(batch), np.float32)
        n = min(batch_size, s - start)
        out[start:start + n] = probability[:n, :h, :w, 0]
    return out
