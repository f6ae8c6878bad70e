"""Fitting and predicting with the U-Net family on the nuclei and EM competitions.

Nuclei: two sigmoid outputs, foreground and object boundary; instances come from a
marker-controlled watershed (markers: foreground minus boundary). EM: one output, the
cell probability, in the ISBI submission's polarity (high = cell).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np

from competition.postprocess import boundary_target, predictions_from_maps
from competition.tiling import predict_tiled
from models.losses import combined
from models.training import PatchDataset, arm_channels, normalise, predict_batches
from models.weights import unet_weight_map


@dataclass
class Trained:
    model: keras.Model
    config: dict
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    images_per_second: float = 0.0


def channels(gray: np.ndarray, config: dict) -> np.ndarray:
    raw = normalise(gray, invert=config.get("invert", False))
    return arm_channels(raw) if config["arms"] else raw[..., None]


def nuclei_gray(rgb: np.ndarray) -> tuple[np.ndarray, bool]:
    """Grey image and whether its background is bright (bright-field, stained tissue): those
    are inverted so that nuclei are always bright."""
    gray = rgb.astype(np.float32).mean(axis=-1)
    return gray, bool(np.median(gray) > 127)


def training_pairs(task: str, data, config: dict):
    images, targets = [], []
    if task == "nuclei":
        for rgb, labels in zip(data.images, data.labels, strict=True):
            gray, bright = nuclei_gray(rgb)
            images.append(channels(gray, {**config, "invert": bright}))
            target = [labels > 0, boundary_target(labels)]
            if config["weight_maps"]:
                target.append(unet_weight_map(labels, config["w0"], config["sigma"]))
            targets.append(np.stack(target, -1).astype(np.float32))
    else:
        for raw, labels in zip(data.volume, data.labels, strict=True):
            images.append(channels(raw, config))
            target = [labels > 0]
            if config["weight_maps"]:
                from scipy import ndimage

                target.append(unet_weight_map(ndimage.label(labels > 0)[0], config["w0"],
                                              config["sigma"]))
            targets.append(np.stack(target, -1).astype(np.float32))
    return images, targets


def fit(task: str, data, config: dict, build: Callable[..., keras.Model],
        on_epoch: Callable[[int, dict], None] | None = None) -> Trained:
    keras.utils.set_random_seed(config["seed"])
    # GPU switches (measured on and off for the README): float16 compute with float32
    # outputs (the builders' last layer), and XLA compilation of the train step.
    keras.mixed_precision.set_global_policy(
        "mixed_float16" if config.get("mixed_precision") else "float32")
    images, targets = training_pairs(task, data, config)
    out_channels = 2 if task == "nuclei" else 1
    model = build(in_channels=1, out_channels=out_channels, depth=config["depth"],
                  base_filters=config["base_filters"], batch_norm=config["batch_norm"],
                  dropout=config["dropout"])
    model.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]),
                  loss=combined(config["loss"], weighted=config["weight_maps"]),
                  jit_compile=config.get("jit_compile", "auto"))
    dataset = PatchDataset(images, targets, config["patch"], config["batch_size"],
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


def probabilities(trained: Trained, image_channels: np.ndarray) -> np.ndarray:
    config = trained.config
    return predict_tiled(predict_batches(trained.model, config["arms"]), image_channels,
                         tile=config["patch"], overlap=config["tile_overlap"])


def probability_maps(task: str, trained: Trained, inputs):
    """Nuclei: {ImageId: (H, W, 2) foreground and boundary}. EM: cell probabilities
    (slices, H, W), high = cell as ISBI submissions want them."""
    config = trained.config
    if task == "nuclei":
        out = {}
        for image_id, rgb in zip(inputs.ids, inputs.images, strict=True):
            gray, bright = nuclei_gray(rgb)
            out[image_id] = probabilities(trained, channels(gray, {**config, "invert": bright}))
        return out
    return np.stack([probabilities(trained, channels(raw, config))[..., 0]
                     for raw in inputs.volume])


def predict(task: str, trained: Trained, inputs):
    """Nuclei: {ImageId: instance labels}. EM: cell probabilities (slices, H, W)."""
    return predictions_from_maps(task, probability_maps(task, trained, inputs), trained.config)
