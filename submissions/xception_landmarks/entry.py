"""Landmark refiner after the published Xception approach: around each landmark's ALPACA
estimate, four 224x224 surface patches (three radii and a shifted window; see
competition/patches.py); a CNN regresses the true landmark's pixel position in each; the
positions are mapped back to the surface (ray cast) and their median is the refined point.

- Pose: test specimens arrive rotated at random. Every specimen is first moved onto the
  training specimens' mean shape by a rigid fit of its estimates (Procrustes), and each
  landmark's patches take their in-plane x axis from one seed direction, so that a patch's
  "up" means the same on every specimen.
- Training estimates err the way test estimates do: by default they are ALPACA's own
  leave-one-out estimates of the training specimens (`training_estimates: alpaca`, or a
  landmark CSV of them); further `repeats` jitter them. `training_estimates: jitter`
  displaces the manual landmarks instead (no registration needed: the smoke run).
- `outputs: per_landmark_view` (the CPU configuration): every landmark and view shares
  the backbone and hidden layer and has its own last layer, which starts at the mean
  training target of its patches. `outputs: one` is the published model exactly (one
  landmark a model: `only_landmarks`).
- Shrinkage: the refined point moves from the estimate towards the CNN's point by a factor
  chosen on held-out training specimens (`shrink: auto`), the share of the move that
  beats the estimate there most often.
"""

from __future__ import annotations

import logging
from pathlib import Path

import albumentations as A
import cv2
import keras
import numpy as np
from scipy.spatial import cKDTree

from competition.entries import load_entry, resolve_config
from competition.errors import CompetitionError
from competition.landmark_imaging import procrustes
from competition.landmark_imaging.patch_sets import read_estimates
from competition.landmark_imaging.patches import (
    SIZE,
    jittered_estimate,
    landmark_seeds,
    posed,
    views,
)
from models.landmarks import build_refiner, start_outputs

log = logging.getLogger("competition.entries.xception_landmarks")
HERE = Path(__file__).resolve().parent
ALPACA = HERE.parent / "alpaca"
SHRINK_GRID = np.round(np.linspace(0, 1, 11), 2)


class Refiner:
    """A trained refiner. (A plain class: entries are loaded from their folder, outside
    sys.modules, where dataclasses cannot resolve annotations.)"""

    def __init__(self, model: keras.Model, config: dict, landmarks: list[str],
                 names: list[str], mean: np.ndarray, seeds: np.ndarray, shrink: float):
        self.model, self.config = model, config
        self.landmarks = landmarks  # every landmark name of the competition, in order
        self.names = names  # the ones this model refines
        self.mean = mean  # (landmarks, 3) the training mean shape: the common pose
        self.seeds = seeds  # (names, 3) each refined landmark's in-plane x direction
        self.shrink = shrink
        self.alpaca: tuple | None = None
        self.calibration: dict | None = None

    @property
    def report(self) -> dict:
        """What `competition run` keeps in run.json: the shrinkage and how it was chosen."""
        return {"shrink": self.shrink, "held_out": self.calibration}


def chosen_landmarks(names, config):
    wanted = config.get("only_landmarks")
    return [n for n in names if wanted is None or str(n) in {str(w) for w in wanted}]


def _views(config):
    return views(tuple(config["radii"]), config["shift_mm"])


def _alpaca(task, config):
    module = load_entry(ALPACA)
    alpaca_config = {**resolve_config(ALPACA, task.name, None, []),
                     **(config.get("alpaca") or {})}
    return module, alpaca_config


def training_estimates(task, train, config) -> np.ndarray:
    how = config["training_estimates"]
    if how == "jitter":
        return np.asarray(train.points, float)
    if how == "alpaca":
        module, alpaca_config = _alpaca(task, config)
        return module.cross_estimates(train, alpaca_config)
    given = read_estimates(Path(how), train.ids, train.landmarks)
    return np.array([given[i] for i in train.ids])


def shown(image: np.ndarray, config, rng: np.random.Generator) -> np.ndarray:
    """The patch as the CNN sees it. `images: noise` or `constant` replace it (the ablation
    that tells whether the images help at all: what such a model learns is only where each
    landmark and view lies on average)."""
    how = config.get("images", "real")
    if how == "real":
        return image
    if how == "noise":
        return rng.integers(0, 256, image.shape, dtype=np.uint8)
    if how == "constant":
        return np.full_like(image, 128)
    raise CompetitionError(f"images {how!r}: real, noise or constant")


def kinds_of(config, names) -> int:
    """Output kinds: one (the published model), or one per landmark and view."""
    return 1 if config["outputs"] == "one" else len(names) * len(_views(config))


def training_patches(surfaces, truths, estimates, index, seeds, config, rng):
    """Images, targets (pixel positions scaled to [-1, 1]), kinds (landmark position in
    `index` times the number of views plus the view) and specimen numbers of every
    specimen, landmark, estimate and view. The first estimate
    of each landmark is the given one; the other `repeats - 1` are jittered from it (from
    the manual landmark with `training_estimates: jitter`, every one is)."""
    images, targets, which, groups = [], [], [], []
    jitter_all = config["training_estimates"] == "jitter"
    for s, (surface, truth, estimate) in enumerate(zip(surfaces, truths, estimates,
                                                       strict=True)):
        tree = cKDTree(surface.vertices)
        for r in range(config["repeats"]):
            for j, k in enumerate(index):
                centre = estimate[k]
                if jitter_all or r > 0:
                    centre = jittered_estimate(surface, centre, config["jitter_mm"], rng, tree)
                for v, view in enumerate(_views(config)):
                    patch = surface.render(centre, view, seeds[j])
                    images.append(shown(patch.image, config, rng))
                    targets.append(patch.to_pixel(truth[k])[0] / (SIZE - 1) * 2 - 1)
                    which.append(j * len(_views(config)) + v)
                    groups.append(s)
    return (np.stack(images), np.array(targets, np.float32), np.array(which),
            np.array(groups))


class RotatedPatches(keras.utils.PyDataset):
    """Batches with rotation augmentation (up to `degrees`) that moves the keypoint with the
    image (albumentations). With `landmarks` > 1 the inputs also hold each patch's landmark
    as a one-hot code."""

    def __init__(self, images, targets, batch_size, degrees, seed, which=None, kinds=1,
                 **kwargs):
        super().__init__(**kwargs)
        self.images, self.targets, self.batch_size = images, targets, batch_size
        self.which, self.kinds = which, kinds
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
        x = np.stack(xs).astype(np.float32)
        if self.kinds > 1:
            x = (x, np.eye(self.kinds, dtype=np.float32)[self.which[picked]])
        return x, np.array(ys, np.float32)


def model_inputs(images, which, kinds):
    images = np.asarray(images, np.float32)
    return images if kinds == 1 else \
        (images, np.eye(kinds, dtype=np.float32)[np.asarray(which)])


def transfer_weights(source: keras.Model, target: keras.Model) -> int:
    """Start `target` from `source` (another landmark's model): layers with weights are
    matched in order and copied where every shape agrees (the backbone and the head's
    hidden layers; a last layer made for another number of landmarks is left as it is).
    Returns the number of layers copied."""
    copied = 0
    for a, b in zip([la for la in source.layers if la.weights],
                    [lb for lb in target.layers if lb.weights], strict=False):
        wa, wb = a.get_weights(), b.get_weights()
        if len(wa) == len(wb) and all(x.shape == y.shape for x, y in zip(wa, wb, strict=True)):
            b.set_weights(wa)
            copied += 1
    return copied


def fit(task, train, config, on_epoch=None):
    if config["shrink"] != "auto" and not 0 <= float(config["shrink"]) <= 1:
        raise CompetitionError(f"shrink {config['shrink']}: auto or a number in [0, 1]")
    shown(np.zeros((1, 1, 3), np.uint8), config, rng=np.random.default_rng())  # checks it
    keras.utils.set_random_seed(config["seed"])
    rng = np.random.default_rng(config["seed"])
    names = chosen_landmarks(train.landmarks, config)
    if not names:
        raise CompetitionError(f"only_landmarks {config.get('only_landmarks')}: no such "
                               f"landmark (names: {', '.join(train.landmarks)})")
    index = [train.landmarks.index(n) for n in names]
    estimates = training_estimates(task, train, config)
    mean = procrustes.mean_shape(np.asarray(train.points, float))
    surfaces, truths, placed = [], [], []
    for mesh, truth, estimate in zip(train.meshes, train.points, estimates, strict=True):
        surface, moved, pose = posed(mesh.vertices, mesh.faces, estimate, mean)
        surfaces.append(surface)
        truths.append(procrustes.apply(truth, pose))
        placed.append(moved)
    seeds = landmark_seeds(surfaces, np.array(truths)[:, index], _views(config)[1].radius)
    # Whole specimens held out: early stopping's report (the stop itself watches the
    # training loss, as published) and the choice of the shrinkage.
    n_held = config["validation_specimens"] if len(train.ids) > config[
        "validation_specimens"] else 0
    fitted = len(train.ids) - n_held
    images, targets, which, _ = training_patches(surfaces[:fitted], truths[:fitted],
                                                 placed[:fitted], index, seeds, config, rng)
    kinds = kinds_of(config, names)
    model = build_refiner(config["backbone"], SIZE, config.get("weights"), config["width"],
                          kinds=kinds)
    if kinds > 1:
        start_outputs(model, targets, which)
    if config.get("init_from"):  # transfer from another landmark's model
        copied = transfer_weights(keras.models.load_model(config["init_from"]), model)
        if not copied:
            raise CompetitionError(f"init_from {config['init_from']}: no layer fits this "
                                   "model")
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
    validation = None
    if n_held:
        held = training_patches(surfaces[fitted:], truths[fitted:], placed[fitted:], index,
                                seeds, {**config, "repeats": 1}, rng)
        validation = (model_inputs(held[0], held[2], kinds), held[1])
    model.fit(RotatedPatches(images, targets, config["batch_size"], config["rotation_degrees"],
                             config["seed"], which, kinds),
              epochs=config["epochs"], validation_data=validation,
              verbose=config["verbose"], callbacks=callbacks)
    refiner = Refiner(model, config, list(train.landmarks), names, mean, seeds,
                      shrink=1.0 if config["shrink"] == "auto" else float(config["shrink"]))
    if config["shrink"] == "auto" and n_held and config["training_estimates"] != "jitter":
        refiner.shrink, refiner.calibration = calibrate(
            refiner, train.meshes[fitted:], estimates[fitted:], train.points[fitted:])
        chosen = refiner.calibration[f"{refiner.shrink:.1f}"]
        log.info("shrink %.1f: beats the estimates on %.1f %% of the held-out points (all "
                 "the way: %.1f %%)", refiner.shrink, chosen["win_rate"],
                 refiner.calibration["1.0"]["win_rate"])
    if not config.get("estimates"):
        module, alpaca_config = _alpaca(task, config)
        refiner.alpaca = (module, module.fit(task, train, alpaca_config), alpaca_config)
    return refiner


def refine(refiner: Refiner, mesh, estimates: np.ndarray, shrinks=None):
    """The CNN's points for one specimen (every landmark; unrefined ones keep their
    estimate), for each shrinkage in `shrinks` (default: the model's), in the specimen's
    own pose."""
    surface, placed, pose = posed(mesh.vertices, mesh.faces, np.asarray(estimates, float),
                                  refiner.mean)
    config = refiner.config
    batch, which, patches = [], [], []
    rng = np.random.default_rng(config["seed"])
    for j, name in enumerate(refiner.names):
        k = refiner.landmarks.index(name)
        for v, view in enumerate(_views(config)):
            patch = surface.render(placed[k], view, refiner.seeds[j])
            patches.append(patch)
            batch.append(shown(patch.image, config, rng))
            which.append(j * len(_views(config)) + v)
    scaled = np.asarray(refiner.model.predict(
        model_inputs(batch, which, kinds_of(config, refiner.names)), batch_size=32, verbose=0))
    pixels = (scaled + 1) / 2 * (SIZE - 1)
    found, n = placed.copy(), len(_views(config))
    for j, name in enumerate(refiner.names):
        k = refiner.landmarks.index(name)
        hits = np.array([p.to_surface(px[None])[0] for p, px in
                         zip(patches[n * j:n * j + n], pixels[n * j:n * j + n], strict=True)])
        hits = hits[np.isfinite(hits).all(axis=1)]
        if len(hits):
            found[k] = np.median(hits, axis=0)
    # Not snapped to a vertex: vertices lie 0.1 to 0.2 mm apart, as far as a shrunk move
    # goes. Both ends lie on the surface, and so, within hundredths of a mm, does the chord.
    estimates = np.asarray(estimates, float)
    found = procrustes.apply(found, procrustes.invert(pose))
    return [estimates + s * (found - estimates)
            for s in ((refiner.shrink,) if shrinks is None else shrinks)]


def calibrate(refiner, meshes, estimates, truths) -> tuple[float, dict]:
    """The shrinkage (from SHRINK_GRID, above 0) whose points beat the held-out specimens'
    estimates most often (strictly; ties broken by the lower mean error)."""
    columns = [refiner.landmarks.index(n) for n in refiner.names]
    wins = np.zeros(len(SHRINK_GRID))
    errors = np.zeros(len(SHRINK_GRID))
    count = 0
    for mesh, estimate, truth in zip(meshes, estimates, truths, strict=True):
        base = np.linalg.norm(estimate - truth, axis=1)[columns]
        for g, points in enumerate(refine(refiner, mesh, estimate, SHRINK_GRID)):
            d = np.linalg.norm(points - truth, axis=1)[columns]
            wins[g] += (d < base).sum()
            errors[g] += d.sum()
        count += len(columns)
    table = {f"{s:.1f}": {"win_rate": float(100 * w / count), "mean_error": float(e / count)}
             for s, w, e in zip(SHRINK_GRID, wins, errors, strict=True)}
    best = max(range(1, len(SHRINK_GRID)), key=lambda g: (wins[g], -errors[g]))
    return float(SHRINK_GRID[best]), table


def estimates_for(model: Refiner, inputs):
    if model.config.get("estimates"):
        return read_estimates(Path(model.config["estimates"]), inputs.ids, inputs.landmarks)
    module, fitted, alpaca_config = model.alpaca
    return module.place(fitted, inputs, alpaca_config)


def predict(task, model, inputs, config):
    estimates = estimates_for(model, inputs)
    return {specimen: refine(model, mesh, estimates[specimen])[0]
            for specimen, mesh in zip(inputs.ids, inputs.meshes, strict=True)}


def probabilities(task, model, inputs, config):
    """Coordinates are what landmark ensembles combine."""
    return predict(task, model, inputs, config)
