"""Multi-class segmentation of (z, y, x) volumes with 2-D, 2.5-D and 3-D U-Nets.

Task-agnostic: the caller gives a grey volume and its class labels (any array that slices
like numpy: a zarr array is read lazily). `dims` chooses the network:

- 2: one slice in, its classes out (`axes`: the slicing directions patches are cut along);
- 2.5: `context` neighbouring slices on each side as extra channels, the middle slice's
  classes out;
- 3: a 3-D U-Net on (patch_depth, patch, patch) blocks.

Whole volumes are predicted block by block (dask): each block is grown by a halo from its
neighbours (reflected at the volume's faces), predicted whole by the fully convolutional
network and cropped back, so memory is a few blocks whatever the volume's size. 2-D and 2.5-D
networks may predict along several axes (`fusion`: z, y, x) and average the probabilities.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
from keras import ops

from models.unet import build_unet_nd

AXES = {"z": 0, "y": 1, "x": 2}
EPS = 1e-6


@dataclass
class VolumeModel:
    model: keras.Model
    config: dict[str, Any]
    n_classes: int
    low: float  # grey levels mapped to 0 and 1
    high: float
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    images_per_second: float = 0.0
    memo: dict[int, Any] = field(default_factory=dict)  # predictions by inputs, computed once


def in_channels(config: dict[str, Any]) -> int:
    return 2 * int(config.get("context", 0)) + 1 if float(config["dims"]) == 2.5 else 1


def net_dims(config: dict[str, Any]) -> int:
    return 3 if float(config["dims"]) == 3 else 2


def grey_range(volume: Any, samples: int = 16, seed: int = 0) -> tuple[float, float]:
    """The 1st and 99th percentiles of a few slices (bounded work on any volume)."""
    n = int(volume.shape[0])
    picks = sorted(set(np.random.default_rng(seed).integers(0, n, min(samples, n)).tolist()))
    values = np.concatenate([np.asarray(volume[z]).ravel()[::7] for z in picks])
    low, high = np.percentile(values.astype(np.float32), (1, 99))
    return float(low), float(max(high, low + 1e-3))


def class_loss(n_classes: int, dims: int) -> Callable[[Any, Any], Any]:
    """Categorical cross-entropy plus soft Dice averaged over classes (the Dice term keeps a
    rare class, pores, from being ignored)."""
    axes = tuple(range(dims + 1))

    def loss(y_true: Any, y_pred: Any) -> Any:
        p = ops.clip(y_pred, EPS, 1 - EPS)
        ce = -ops.mean(ops.sum(y_true * ops.log(p), axis=-1))
        inter = ops.sum(y_true * p, axis=axes)
        total = ops.sum(y_true, axis=axes) + ops.sum(p, axis=axes)
        return ce + 1 - ops.mean((2 * inter + 1) / (total + 1))

    loss.__name__ = "ce_dice"
    return loss


class VolumePatches(keras.utils.PyDataset):  # type: ignore[misc]  # keras is untyped
    """Random training patches of a volume (held in memory as it is stored, e.g. uint8) with
    one-hot targets; flips, in-plane quarter turns and brightness/contrast jitter."""

    def __init__(self, volume: np.ndarray, labels: np.ndarray, config: dict[str, Any],
                 n_classes: int, low: float, high: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.volume, self.labels, self.config = volume, labels, config
        self.n_classes, self.low, self.high = n_classes, low, high
        self.dims = float(config["dims"])
        self.context = int(config.get("context", 0)) if self.dims == 2.5 else 0
        self.axes = [AXES[a] for a in config.get("axes", ["z"])]
        self.epoch = 0

    def __len__(self) -> int:
        return int(self.config["steps_per_epoch"])

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def _sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        p = int(self.config["patch"])
        if self.dims == 3:
            size = (int(self.config["patch_depth"]), p, p)
            volume, labels = self.volume, self.labels
        else:
            axis = self.axes[int(rng.integers(len(self.axes)))]
            order = (axis, *[a for a in range(3) if a != axis])
            volume, labels = self.volume.transpose(order), self.labels.transpose(order)
            size = (2 * self.context + 1, p, p)
        starts = [int(rng.integers(0, max(s - k, 0) + 1)) for s, k in zip(volume.shape, size,
                                                                          strict=True)]
        box = tuple(slice(a, a + k) for a, k in zip(starts, size, strict=True))
        grey, truth = _padded(volume[box], size), _padded(labels[box], size)
        x = (grey.astype(np.float32) - self.low) / (self.high - self.low)
        if self.dims != 3:  # slices as channels, the middle slice's classes as targets
            x = np.moveaxis(x, 0, -1)
            truth = truth[self.context]
        else:
            x = x[..., None]
        y = np.eye(self.n_classes, dtype=np.float32)[truth]
        if self.config.get("augment", True):
            x, y = _augment(x, y, rng, spatial=3 if self.dims == 3 else 2)
        return x, y

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng((int(self.config["seed"]), self.epoch, index))
        pairs = [self._sample(rng) for _ in range(int(self.config["batch_size"]))]
        return np.stack([x for x, _ in pairs]), np.stack([y for _, y in pairs])


def _padded(block: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    pad = [(0, max(k - s, 0)) for s, k in zip(block.shape, size, strict=True)]
    return np.pad(block, pad, mode="reflect") if any(b for _, b in pad) else np.asarray(block)


def _augment(x: np.ndarray, y: np.ndarray, rng: np.random.Generator,
             spatial: int) -> tuple[np.ndarray, np.ndarray]:
    for axis in range(spatial):
        if rng.random() < 0.5:
            x, y = np.flip(x, axis), np.flip(y, axis)
    k = int(rng.integers(4))
    plane = (spatial - 2, spatial - 1)
    x, y = np.rot90(x, k, plane), np.rot90(y, k, plane)
    x = x * rng.uniform(0.9, 1.1) + rng.uniform(-0.05, 0.05)
    return np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y)


def training_volume(volume: Any, labels: Any, max_voxels: int) -> tuple[np.ndarray, np.ndarray]:
    """The training volume in memory as stored (e.g. uint8), at most `max_voxels`: the
    central slices of a larger one."""
    n = int(volume.shape[0])
    plane = int(np.prod(volume.shape[1:]))
    keep = min(n, max(max_voxels // plane, 1))
    z0 = (n - keep) // 2
    return np.asarray(volume[z0:z0 + keep]), np.asarray(labels[z0:z0 + keep]).astype(np.uint8)


def fit(volume: Any, labels: Any, config: dict[str, Any], n_classes: int,
        on_epoch: Callable[..., None] | None = None) -> VolumeModel:
    keras.utils.set_random_seed(int(config["seed"]))
    grey, truth = training_volume(volume, labels, int(config.get("max_train_voxels",
                                                                 400_000_000)))
    low, high = grey_range(grey)
    model = build_unet_nd(net_dims(config), in_channels(config), n_classes,
                          int(config["depth"]), int(config["base_filters"]),
                          bool(config["batch_norm"]), float(config["dropout"]))
    model.compile(optimizer=keras.optimizers.Adam(float(config["learning_rate"])),
                  loss=class_loss(n_classes, net_dims(config)),
                  jit_compile=config.get("jit_compile", "auto"))
    dataset = VolumePatches(grey, truth, config, n_classes, low, high,
                            workers=int(config.get("workers", 1)), use_multiprocessing=False)
    trained = VolumeModel(model, config, n_classes, low, high)
    callbacks = []
    if on_epoch is not None:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: on_epoch(epoch, dict(logs or {}), trained)))
    start = time.perf_counter()
    history = model.fit(dataset, epochs=int(config["epochs"]), verbose=config.get("verbose", 0),
                        callbacks=callbacks)
    trained.seconds = time.perf_counter() - start
    seen = int(config["epochs"]) * int(config["steps_per_epoch"]) * int(config["batch_size"])
    trained.history = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    trained.images_per_second = seen / max(trained.seconds, 1e-9)
    return trained


# --- prediction -----------------------------------------------------------------------------------

def halo(config: dict[str, Any]) -> tuple[int, int, int]:
    """How far each block is grown on every side: the network's context in-plane (and, for
    2.5-D, the neighbouring slices along each predicted axis)."""
    h = int(config.get("halo", 16))
    if float(config["dims"]) == 2.5:
        h = max(h, int(config.get("context", 0)))
    return h, h, h


def _fit_size(n: int, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)


def _pad_to(block: np.ndarray, multiple: int, spatial: int) -> tuple[np.ndarray, tuple[int, ...]]:
    shape = block.shape[:spatial]
    pad = [(0, _fit_size(s, multiple) - s) for s in shape] + [(0, 0)] * (block.ndim - spatial)
    padded = np.pad(block, pad, mode="reflect") if any(b for _, b in pad) else block
    return padded, shape


def predict_block(trained: VolumeModel, block: np.ndarray) -> np.ndarray:
    """(z, y, x, K) probabilities of a grey block (halo included: the caller crops it)."""
    config = trained.config
    x = (block.astype(np.float32) - trained.low) / (trained.high - trained.low)
    multiple = 2 ** int(config["depth"])
    if float(config["dims"]) == 3:
        padded, shape = _pad_to(x[..., None], multiple, 3)
        out = trained.model.predict_on_batch(padded[None])[0]
        result: np.ndarray = np.asarray(out, np.float32)[: shape[0], : shape[1], : shape[2]]
        return result
    context = int(config.get("context", 0)) if float(config["dims"]) == 2.5 else 0
    fusion = [AXES[a] for a in config.get("fusion", ["z"])]
    total = np.zeros((*x.shape, trained.n_classes), np.float32)
    batch = int(config.get("predict_batch", 8))
    for axis in fusion:
        moved = np.moveaxis(x, axis, 0)
        if context:
            stacked = np.pad(moved, ((context, context), (0, 0), (0, 0)), mode="reflect")
            slices = np.stack([stacked[k:k + len(moved)] for k in range(2 * context + 1)], -1)
        else:
            slices = moved[..., None]
        n, a, b = slices.shape[:3]
        pad = ((0, 0), (0, _fit_size(a, multiple) - a), (0, _fit_size(b, multiple) - b), (0, 0))
        if pad[1][1] or pad[2][1]:
            slices = np.pad(slices, pad, mode="reflect")
        out = np.concatenate([np.asarray(trained.model.predict_on_batch(slices[k:k + batch]),
                                         np.float32)
                              for k in range(0, n, batch)])[:, :a, :b]
        total += np.moveaxis(out, 0, axis)
    total /= len(fusion)
    return total


def probabilities(trained: VolumeModel, volume: Any) -> Any:
    """A dask array (z, y, x, K) of class probabilities, computed block by block."""
    import dask.array as da

    config = trained.config
    chunks = tuple(min(int(c), int(s)) for c, s in zip(config.get("predict_chunk",
                                                                  [32, 256, 256]),
                                                       volume.shape, strict=True))
    source = volume if isinstance(volume, da.Array) else \
        da.from_array(volume, chunks=chunks, lock=False)  # type: ignore[no-untyped-call]
    source = source.rechunk(chunks)
    depth = halo(config)
    # Reflection needs blocks at least as deep as the halo.
    depth = tuple(min(d, min(c)) for d, c in zip(depth, source.chunks, strict=True))
    grown = da.overlap.overlap(source, depth=dict(enumerate(depth)),  # type: ignore[no-untyped-call]
                               boundary="reflect")

    def block_probabilities(block: np.ndarray) -> np.ndarray:
        out = predict_block(trained, block)
        crop = tuple(slice(d, out.shape[k] - d) for k, d in enumerate(depth))
        return out[crop]

    # meta given: dask would otherwise call the network on an empty block to find it
    return grown.map_blocks(block_probabilities, dtype=np.float32,
                            chunks=(*source.chunks, (trained.n_classes,)), new_axis=3,
                            meta=np.empty((0, 0, 0, 0), np.float32))


def labels(trained: VolumeModel, volume: Any, in_memory_voxels: int = 1_000_000_000) -> Any:
    """The (z, y, x) uint8 label volume (argmax of the probabilities): in memory up to
    `in_memory_voxels`, else written to a temporary zarr store and returned lazily."""
    import dask

    classes = probabilities(trained, volume).argmax(axis=-1).astype(np.uint8)
    with dask.config.set(scheduler="threads", num_workers=1):  # Keras uses the cores itself
        if np.prod(classes.shape) <= in_memory_voxels:
            return classes.compute()
        import tempfile

        import zarr

        store = tempfile.mkdtemp(prefix="labels-", suffix=".zarr")
        target = zarr.create_array(store=store, shape=classes.shape, chunks=classes.chunksize,
                                   dtype="uint8")
        classes.store(target, lock=False)
        return target
