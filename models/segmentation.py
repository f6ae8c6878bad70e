"""Fitting and predicting with the U-Net family on grey images and target maps.

Task-agnostic: the caller gives each training image (H, W) with its targets (H, W, K) and,
for weight maps or scale handling, its objects (H, W) labels (a competition task's
`pixel_items` do); a model predicts K maps per image, whole images by overlapping tiles.

Optional steps, each a configuration key (absent: off, as before):
- `canonical_diameter: PX`: training images are rescaled so that their labelled objects'
  median diameter is PX; a new image is rescaled by its estimated object diameter (a blob
  scale, calibrated on the training images against their labels; `models.scale`) and its
  maps rescaled back; `scale_refine: true` measures the objects of a first prediction and
  predicts again at their scale where it differs by more than 20 %.
- `diameter_range: [LOW, HIGH]` (without a canonical diameter): training images stay as
  they are; a new image whose estimated object diameter lies outside the range is rescaled
  to its nearer end (multi-scale only where the training set has few objects that size).
- `zoom: [LOW, HIGH]`: random rescaling of training patches (scale augmentation).
- `percentiles: [LOW, HIGH]`: the contrast stretch's percentiles (default 1 and 99;
  `models.training.normalise`).
- `tta: N`: maps averaged over N flips and rotations (1, 2, 4 or 8; `models.tta`).
- `threads: auto`: TensorFlow's thread pools sized to the usable cores (`models.threads`).
- `snapshot_every: N`: the model goes with every Nth epoch's logs to `on_epoch` (the
  harness draws a validation picture then), and with the last.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from models import scale, threads, tta
from models.losses import combined
from models.snapshots import snapshot_callback
from models.tiling import predict_tiled
from models.training import PatchDataset, arm_channels, normalise, predict_batches
from models.weights import unet_weight_map

log = logging.getLogger(__name__)
REFINE_TOLERANCE = 1.2  # a first prediction's object scale this far off: predict again
MAX_CALIBRATION_IMAGES = 200  # training images the blob estimate is calibrated on
MODEL_FILE, STATE_FILE = "model.keras", "trained.json"  # what save_trained writes


@dataclass
class Trained:
    model: keras.Model
    config: dict[str, Any]
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    images_per_second: float = 0.0
    # labelled diameter / blob estimate (median over training images): estimates times this
    scale_calibration: float = 1.0
    postprocess: dict[str, Any] = field(default_factory=dict)  # chosen on held-out images
    timings: dict[str, float] = field(default_factory=dict)
    threads: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # an entry's own report

    @property
    def report(self) -> dict[str, Any]:
        """What `competition run` keeps in run.json beside its own timings."""
        return {"timings": {k: round(v, 3) for k, v in self.timings.items()},
                "patches_per_second": round(self.images_per_second, 3),
                "threads": self.threads, "scale_calibration": round(self.scale_calibration, 4),
                "postprocess": self.postprocess, **self.extra}


def channels(gray: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    """The network's input channels: the contrast-stretched image (and, for the multi-arm
    U-Net, its CLAHE and adaptive-threshold versions)."""
    raw = normalise(gray, invert=config.get("invert", False),
                    percentiles=config.get("percentiles", (1.0, 99.0)))
    return arm_channels(raw) if config["arms"] else raw[..., None]


def training_pairs(images: Sequence[np.ndarray], targets: Sequence[np.ndarray],
                   objects: Sequence[np.ndarray | None], config: dict[str, Any]
                   ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Input channels and targets (with the weight map as an extra last channel when
    `weight_maps` is set: the U-Net paper's weighting of gaps between touching objects),
    zoomed to the canonical object size where one is configured, stored as float16 (half the
    memory; patches are float32 again when cut). One image at a time, so that no second
    full-size copy of the training set is ever held."""
    canonical = config.get("canonical_diameter")
    inputs, outputs = [], []
    for image, target, labels in zip(images, targets, objects, strict=True):
        if canonical:
            image, target, labels = zoomed(image, target, labels, canonical)
        inputs.append(channels(image, config).astype(np.float16))
        target = np.asarray(target, np.float32)
        if config["weight_maps"]:
            if labels is None:
                raise ValueError("weight maps need each training image's objects")
            weights = unet_weight_map(labels, config["w0"], config["sigma"])
            target = np.concatenate([target, weights[..., None].astype(np.float32)], -1)
        outputs.append(target.astype(np.float16))
    return inputs, outputs


def zoomed(image: np.ndarray, target: np.ndarray, labels: np.ndarray | None, canonical: float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A training image, its targets and objects zoomed so that its objects measure
    `canonical` px (an image without objects stays as it is)."""
    factor = scale.factor_for(scale.object_diameter(labels) if labels is not None else None,
                              canonical)
    shape = scale.zoomed_shape(np.shape(image), factor)
    return (scale.resize(np.asarray(image, np.float32), shape),
            scale.resize(np.asarray(target, np.float32), shape),
            None if labels is None else scale.resize(labels, shape, nearest=True))


def calibration(images: Sequence[np.ndarray], objects: Sequence[np.ndarray | None],
                seed: int = 0) -> float:
    """Median ratio of labelled object diameter to the blob estimate (on a sample)."""
    pairs = [(im, lab) for im, lab in zip(images, objects, strict=True) if lab is not None]
    if not pairs:
        return 1.0
    pick = np.random.default_rng(seed).permutation(len(pairs))[:MAX_CALIBRATION_IMAGES]
    ratios = []
    for k in pick:
        image, labels = pairs[k]
        measured = scale.object_diameter(labels)
        if measured:
            ratios.append(measured / max(scale.blob_diameter(image), 1e-6))
    return float(np.median(ratios)) if ratios else 1.0


def compiled_model(config: dict[str, Any], out_channels: int,
                   build: Callable[..., keras.Model]) -> keras.Model:
    """The network, compiled with the configured loss, optimiser and XLA switch."""
    # GPU switches (measured on and off for the README): float16 compute with float32
    # outputs (the builders' last layer), and XLA compilation of the train step.
    keras.mixed_precision.set_global_policy(
        "mixed_float16" if config.get("mixed_precision") else "float32")
    model = build(in_channels=1, out_channels=out_channels, depth=config["depth"],
                  base_filters=config["base_filters"], batch_norm=config["batch_norm"],
                  dropout=config["dropout"])
    model.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]),
                  loss=combined(config["loss"], weighted=config["weight_maps"]),
                  jit_compile=config.get("jit_compile", "auto"))
    return model


def patch_dataset(inputs: list[np.ndarray], outputs: list[np.ndarray],
                  config: dict[str, Any]) -> PatchDataset:
    return PatchDataset(inputs, outputs, config["patch"], config["batch_size"],
                        config["steps_per_epoch"], augment=config["augment"],
                        elastic=config["elastic"], zoom=config.get("zoom"),
                        photometric_channels=2 if config["arms"] else 1,
                        arms=config["arms"], seed=config["seed"],
                        workers=config["workers"], use_multiprocessing=False)


def fit(images: Sequence[np.ndarray], targets: Sequence[np.ndarray],
        objects: Sequence[np.ndarray | None], config: dict[str, Any],
        build: Callable[..., keras.Model],
        on_epoch: Callable[..., None] | None = None) -> Trained:
    timings: dict[str, float] = {}
    thread_info = threads.configure_tensorflow(config.get("threads", "auto"))
    keras.utils.set_random_seed(config["seed"])
    start = time.perf_counter()
    canonical = config.get("canonical_diameter")
    calibrated = 1.0
    if canonical or config.get("diameter_range"):
        calibrated = calibration(images, objects, config["seed"])
        timings["scale_calibration"] = time.perf_counter() - start
    mark = time.perf_counter()
    inputs, outputs = training_pairs(images, targets, objects, config)
    timings["prepare_inputs"] = time.perf_counter() - mark
    mark = time.perf_counter()
    model = compiled_model(config, int(np.asarray(targets[0]).shape[-1]), build)
    dataset = patch_dataset(inputs, outputs, config)
    timings["build"] = time.perf_counter() - mark
    trained = Trained(model, config, scale_calibration=calibrated, timings=timings,
                      threads=thread_info)
    callbacks = []
    if on_epoch is not None:  # the model so far goes with an epoch's logs (snapshots)
        callbacks.append(snapshot_callback(on_epoch, trained, config))
    mark = time.perf_counter()
    # Validation pictures during training are drawn without test-time augmentation (one
    # prediction, not `tta`); the trained model predicts with it.
    trained.config = {**config, "tta": 1}
    history = model.fit(dataset, epochs=config["epochs"], verbose=config["verbose"],
                        callbacks=callbacks)
    trained.config = config
    trained.seconds = time.perf_counter() - mark
    timings["epochs"] = trained.seconds
    seen = config["epochs"] * config["steps_per_epoch"] * config["batch_size"]
    trained.history = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    trained.images_per_second = seen / trained.seconds
    return trained


def _maps_at(trained: Trained, image: np.ndarray, factor: float, n_tta: int) -> np.ndarray:
    """Maps of `image` predicted at `factor` times its size, returned at its own size."""
    config = trained.config
    shape = np.shape(image)[:2]
    zoomed = scale.resize(np.asarray(image, np.float32), scale.zoomed_shape(shape, factor))
    predict = predict_batches(trained.model, config["arms"])

    def whole(picture: np.ndarray) -> np.ndarray:
        return predict_tiled(predict, picture, tile=config["patch"],
                             overlap=config["tile_overlap"])

    maps = tta.averaged(whole, channels(zoomed, config), n_tta)
    return scale.resize(maps, (int(shape[0]), int(shape[1])))


def image_factor(trained: Trained, image: np.ndarray) -> float:
    """The zoom that brings this image's objects to the canonical size, or into the diameter
    range (1 without either)."""
    canonical = trained.config.get("canonical_diameter")
    limits = trained.config.get("diameter_range")
    if not canonical and not limits:
        return 1.0
    estimate = scale.blob_diameter(image) * trained.scale_calibration
    if canonical:
        return scale.factor_for(estimate, canonical)
    low, high = limits or (estimate, estimate)
    return scale.factor_for(estimate, float(np.clip(estimate, low, high)))


def probabilities(trained: Trained, image: np.ndarray) -> np.ndarray:
    """(H, W, K) maps of one whole image: by overlapping tiles, at the canonical object
    scale where one is configured, averaged over `tta` transforms."""
    config = trained.config
    n_tta = int(config.get("tta", 1))
    factor = image_factor(trained, image)
    canonical = config.get("canonical_diameter")
    if canonical and config.get("scale_refine"):
        first = _maps_at(trained, image, factor, 1)
        measured = scale.predicted_diameter(first[..., 0], first[..., 1]
                                            if first.shape[-1] > 1 else None)
        if measured is not None:
            refined = scale.factor_for(measured, canonical)
            if max(refined / factor, factor / refined) > REFINE_TOLERANCE:
                factor = refined
            elif n_tta == 1:
                return first
    return _maps_at(trained, image, factor, n_tta)


def probability_maps(trained: Trained, images: Sequence[np.ndarray],
                     track: Callable[[Sequence[np.ndarray], str], Any] | None = None
                     ) -> list[np.ndarray]:
    """Maps of whole images; `track(images, description)` may wrap the loop (progress)."""
    loop = track(images, "Predicting images") if track is not None else images
    return [probabilities(trained, image) for image in loop]


def save_trained(trained: Trained, folder: Path) -> None:
    """`folder/model.keras` (the network) and `folder/trained.json` (what prediction reads
    besides it: the configuration, the scale calibration, the chosen post-processing), so
    that `load_trained(folder)` predicts what `trained` predicts. Histories and timings are
    the run's record (run.json), not the model's."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    trained.model.save(folder / MODEL_FILE)
    state = {"config": trained.config, "scale_calibration": trained.scale_calibration,
             "postprocess": trained.postprocess}
    (folder / STATE_FILE).write_text(json.dumps(state, indent=1, default=_plain) + "\n")


def load_trained(folder: Path) -> Trained:
    """A model saved by `save_trained`, ready to predict (not to train on: the loss is a
    closure of the configuration, so the network is loaded uncompiled)."""
    folder = Path(folder)
    state = json.loads((folder / STATE_FILE).read_text())
    config = state["config"]
    thread_info = threads.configure_tensorflow(config.get("threads", "auto"))
    model = keras.models.load_model(folder / MODEL_FILE, compile=False)
    return Trained(model, config, scale_calibration=float(state["scale_calibration"]),
                   postprocess=dict(state.get("postprocess") or {}), threads=thread_info)


def _plain(value: Any) -> Any:
    """numpy scalars and arrays (chosen settings) as Python numbers and lists, for JSON."""
    return value.tolist() if hasattr(value, "tolist") else str(value)
