"""Fitting and predicting with the U-Net family on grey images and target maps.

Task-agnostic: the caller gives each training image (H, W) with its targets (H, W, K) and,
for weight maps, its objects (H, W) labels (a competition task's `pixel_items` do); a model
predicts K maps per image, whole images by overlapping tiles.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from models.losses import combined
from models.tiling import predict_tiled
from models.training import PatchDataset, arm_channels, normalise, predict_batches
from models.weights import unet_weight_map


@dataclass
class Trained:
    model: keras.Model
    config: dict[str, Any]
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    images_per_second: float = 0.0


def channels(gray: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    """The network's input channels: the contrast-stretched image (and, for the multi-arm
    U-Net, its CLAHE and adaptive-threshold versions)."""
    raw = normalise(gray, invert=config.get("invert", False))
    return arm_channels(raw) if config["arms"] else raw[..., None]


def training_pairs(images: Sequence[np.ndarray], targets: Sequence[np.ndarray],
                   objects: Sequence[np.ndarray | None], config: dict[str, Any]
                   ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Input channels and targets (with the weight map as an extra last channel when
    `weight_maps` is set: the U-Net paper's weighting of gaps between touching objects)."""
    inputs, outputs = [], []
    for image, target, labels in zip(images, targets, objects, strict=True):
        inputs.append(channels(image, config))
        target = np.asarray(target, np.float32)
        if config["weight_maps"]:
            if labels is None:
                raise ValueError("weight maps need each training image's objects")
            weights = unet_weight_map(labels, config["w0"], config["sigma"])
            target = np.concatenate([target, weights[..., None].astype(np.float32)], -1)
        outputs.append(target)
    return inputs, outputs


def fit(images: Sequence[np.ndarray], targets: Sequence[np.ndarray],
        objects: Sequence[np.ndarray | None], config: dict[str, Any],
        build: Callable[..., keras.Model],
        on_epoch: Callable[..., None] | None = None) -> Trained:
    keras.utils.set_random_seed(config["seed"])
    # GPU switches (measured on and off for the README): float16 compute with float32
    # outputs (the builders' last layer), and XLA compilation of the train step.
    keras.mixed_precision.set_global_policy(
        "mixed_float16" if config.get("mixed_precision") else "float32")
    inputs, outputs = training_pairs(images, targets, objects, config)
    out_channels = int(np.asarray(targets[0]).shape[-1])
    model = build(in_channels=1, out_channels=out_channels, depth=config["depth"],
                  base_filters=config["base_filters"], batch_norm=config["batch_norm"],
                  dropout=config["dropout"])
    model.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]),
                  loss=combined(config["loss"], weighted=config["weight_maps"]),
                  jit_compile=config.get("jit_compile", "auto"))
    dataset = PatchDataset(inputs, outputs, config["patch"], config["batch_size"],
                           config["steps_per_epoch"], augment=config["augment"],
                           elastic=config["elastic"],
                           photometric_channels=2 if config["arms"] else 1,
                           arms=config["arms"], seed=config["seed"],
                           workers=config["workers"], use_multiprocessing=False)
    trained = Trained(model, config)
    callbacks = []
    if on_epoch is not None:  # the model so far goes with each epoch's logs (snapshots)
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: on_epoch(epoch, dict(logs or {}), trained)))
    start = time.perf_counter()
    history = model.fit(dataset, epochs=config["epochs"], verbose=config["verbose"],
                        callbacks=callbacks)
    trained.seconds = time.perf_counter() - start
    seen = config["epochs"] * config["steps_per_epoch"] * config["batch_size"]
    trained.history = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    trained.images_per_second = seen / trained.seconds
    return trained


def probabilities(trained: Trained, image: np.ndarray) -> np.ndarray:
    """(H, W, K) maps of one whole image, by overlapping tiles."""
    config = trained.config
    return predict_tiled(predict_batches(trained.model, config["arms"]), channels(image, config),
                         tile=config["patch"], overlap=config["tile_overlap"])


def probability_maps(trained: Trained, images: Sequence[np.ndarray],
                     track: Callable[[Sequence[np.ndarray], str], Any] | None = None
                     ) -> list[np.ndarray]:
    """Maps of whole images; `track(images, description)` may wrap the loop (progress)."""
    loop = track(images, "Predicting images") if track is not None else images
    return [probabilities(trained, image) for image in loop]
