"""Landmark refiner after the published Xception approach: around each landmark's ALPACA
estimate, four 224x224 surface patches (three radii and a shifted window; see
competition/patches.py); a CNN regresses the true landmark's pixel position in each; the
positions are mapped back to the surface (ray cast) and their median is the prediction.

Training patches are centred on the manual landmark displaced like ALPACA's errors
(`jitter_mm`, snapped to the surface), so no registration of the training specimens is
needed. Test estimates come from ALPACA (`submissions/alpaca`, fitted on the same training
specimens), or from a landmark CSV given as `estimates`.
"""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import cv2
import keras
import numpy as np
from scipy.spatial import cKDTree

from competition.formats import landmarks_csv
from competition.patches import SIZE, Surface, jittered_estimate, views
from competition.run import load_entry, resolve_config
from models.landmarks import build_refiner

HERE = Path(__file__).resolve().parent
ALPACA = HERE.parent / "alpaca"


class Refiner:
    def __init__(self, model, config, landmarks, alpaca=None):
        self.model, self.config, self.landmarks, self.alpaca = model, config, landmarks, alpaca


def chosen_landmarks(names, config):
    wanted = config.get("only_landmarks")
    return [n for n in names if wanted is None or str(n) in {str(w) for w in wanted}]


def training_patches(train, config, rng):
    """Images and targets (pixel positions scaled to [-1, 1]) of every specimen, landmark and
    view, around jittered estimates."""
    images, targets, groups = [], [], []
    names = chosen_landmarks(train.landmarks, config)
    index = [train.landmarks.index(n) for n in names]
    for s, mesh in enumerate(train.meshes):
        surface = Surface.of(mesh.vertices, mesh.faces)
        tree = cKDTree(surface.vertices)
        for _ in range(config["repeats"]):
            for k in index:
                truth = train.points[s, k]
                estimate = jittered_estimate(surface, truth, config["jitter_mm"], rng, tree)
                for view in views(tuple(config["radii"]), config["shift_mm"]):
                    patch = surface.render(estimate, view)
                    images.append(patch.image)
                    targets.append(patch.to_pixel(truth)[0] / (SIZE - 1) * 2 - 1)
                    groups.append(s)
    return np.stack(images), np.array(targets, np.float32), np.array(groups)


class RotatedPatches(keras.utils.PyDataset):
    """Batches with rotation augmentation (up to `degrees`) that moves the keypoint with the
    image (albumentations)."""

    def __init__(self, images, targets, batch_size, degrees, seed, **kwargs):
        super().__init__(**kwargs)
        self.images, self.targets, self.batch_size = images, targets, batch_size
        self.rotate = A.Compose(
            [A.Rotate(limit=degrees, border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0)],
            keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
            seed=seed)
        self.order = np.random.default_rng(seed).permutation(len(images))

    def __len__(self):
        return int(np.ceil(len(self.images) / self.batch_size))

    def __getitem__(self, index):
        picked = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        xs, ys = [], []
        for k in picked:
            pixel = (self.targets[k] + 1) / 2 * (SIZE - 1)
            out = self.rotate(image=self.images[k], keypoints=[tuple(pixel)])
            xs.append(out["image"])
            ys.append(np.asarray(out["keypoints"][0][:2]) / (SIZE - 1) * 2 - 1)
        return np.stack(xs).astype(np.float32), np.array(ys, np.float32)


def fit(task, train, config, on_epoch=None):
    if task != "landmarks":
        raise ValueError("the refiner places landmarks on meshes")
    keras.utils.set_random_seed(config["seed"])
    rng = np.random.default_rng(config["seed"])
    images, targets, groups = training_patches(train, config, rng)
    # Whole specimens held out for early stopping's report (the stop itself watches the
    # training loss, as published).
    held = groups >= len(train.meshes) - config["validation_specimens"]
    if held.all() or not held.any():
        held = np.zeros(len(groups), bool)
    model = build_refiner(config["backbone"], SIZE, config.get("weights"),
                          config["width"])
    if config.get("init_from"):  # transfer from another landmark's model
        model.load_weights(config["init_from"])
        model.get_layer(index=1).trainable = bool(config["fine_tune"])
    model.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]), loss="mse",
                  metrics=[keras.metrics.RootMeanSquaredError(name="rmse")])
    callbacks = [keras.callbacks.EarlyStopping(monitor="loss", patience=config["patience"],
                                               restore_best_weights=True)]
    if config.get("checkpoint"):
        callbacks.append(keras.callbacks.ModelCheckpoint(config["checkpoint"],
                                                         monitor="loss", save_best_only=True))
    if on_epoch is not None:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: on_epoch(epoch, dict(logs or {}))))
    data = RotatedPatches(images[~held], targets[~held], config["batch_size"],
                          config["rotation_degrees"], config["seed"])
    validation = (images[held].astype(np.float32), targets[held]) if held.any() else None
    model.fit(data, epochs=config["epochs"], validation_data=validation,
              verbose=config["verbose"], callbacks=callbacks)
    alpaca = None
    if not config.get("estimates"):
        module = load_entry(ALPACA)
        alpaca_config = {**resolve_config(ALPACA, task, None, []),
                         **(config.get("alpaca") or {})}
        alpaca = (module, module.fit(task, train, alpaca_config), alpaca_config)
    return Refiner(model, config, train.landmarks, alpaca)



def estimates_for(model: Refiner, inputs):
    config = model.config
    if config.get("estimates"):
        points, _ = landmarks_csv.read_points(Path(config["estimates"]).read_bytes())
        return {s: np.array([points[s][n] for n in inputs.landmarks]) for s in inputs.ids}
    module, fitted, alpaca_config = model.alpaca
    return module.predict("landmarks", fitted, inputs, alpaca_config)


def predict(task, model, inputs, config):
    estimates = estimates_for(model, inputs)
    names = chosen_landmarks(inputs.landmarks, model.config)
    out = {}
    for specimen, mesh in zip(inputs.ids, inputs.meshes, strict=True):
        surface = Surface.of(mesh.vertices, mesh.faces)
        points = np.array(estimates[specimen], dtype=np.float64)
        for name in names:
            k = inputs.landmarks.index(name)
            patches = [surface.render(points[k], view)
                       for view in views(tuple(model.config["radii"]),
                                         model.config["shift_mm"])]
            scaled = model.model.predict_on_batch(
                np.stack([p.image for p in patches]).astype(np.float32))
            pixels = (np.asarray(scaled) + 1) / 2 * (SIZE - 1)
            found = np.array([p.to_surface(px[None])[0] for p, px in
                              zip(patches, pixels, strict=True)])
            found = found[np.isfinite(found).all(axis=1)]
            if len(found):
                points[k] = np.median(found, axis=0)
        out[specimen] = points
    return out


def probabilities(task, model, inputs, config):
    """Coordinates are what landmark ensembles combine."""
    return predict(task, model, inputs, config)
