"""ALPACA with each landmark's systematic error taken off, without images: the `bias-error`
method of benchmarks/landmarks_cv.py, the best of its 62-skull cross-validation.

ALPACA's errors are partly systematic: in the common pose (each specimen rigidly fitted onto
the training mean shape by its own estimates) a landmark's estimate tends to sit on the same
side of the truth. `fit` learns that from the training specimens only:

1. ALPACA's leave-one-out estimates of the training specimens (each landmarked from a
   template chosen among the others, the way a test specimen is; submissions/alpaca);
2. each landmark's mean offset, truth minus estimate in the common pose, and the share of it
   to apply (`share: auto`: chosen by a further leave-one-out over the training specimens,
   the share of lowest mean error; competition/landmark_imaging/bias.py);
3. ALPACA's template(s) from all of them.

`predict` places the test specimens' landmarks with ALPACA and moves each by that share of
its landmark's offset. Test inputs carry no landmarks: nothing here could read them.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from competition.entries import load_entry, resolve_config
from competition.errors import ConfigError
from competition.landmark_imaging import bias

HERE = Path(__file__).resolve().parent
ALPACA = HERE.parent / "alpaca"


def alpaca(task_name: str, config: dict[str, Any]) -> tuple[ModuleType, dict[str, Any]]:
    """The ALPACA entry and its settings: its config.yaml with `alpaca:` on top."""
    settings = resolve_config(ALPACA, task_name, None, [])
    overrides = config.get("alpaca") or {}
    unknown = sorted(set(overrides) - set(settings))
    if unknown:
        raise ConfigError(f"alpaca.{unknown[0]}: not a setting of {ALPACA / 'config.yaml'}")
    return load_entry(ALPACA), {**settings, **overrides}


def correction(estimates: np.ndarray, truths: np.ndarray,
               config: dict[str, Any]) -> bias.BiasCorrection:
    """Each landmark's offset from training estimates and their truths, with the share to
    apply: `share: auto` chooses it by leave-one-out over these specimens (`criterion`:
    error, the lowest mean error; wins, the most points improved), a number fixes it."""
    share = config["share"]
    if share == "auto":
        return bias.learn(estimates, truths, criterion=config["criterion"])
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
        raise ConfigError(f"share: {share!r}; auto or a number in [0, 1]")
    return bias.learn(estimates, truths, shares=np.array([float(share)]))


def fit(task, train, config, on_epoch=None):
    module, settings = alpaca(task.name, config)
    cache = None
    if config.get("cache"):
        cache = module.TransferCache.for_settings(Path(config["cache"]), settings)
    estimates = module.cross_estimates(train, settings, cache=cache)
    learned = correction(estimates, train.points, config)
    # Mean errors on the training specimens, each left out: ALPACA's, and the corrected
    # one's with offsets learned on the others (the local validation of this entry).
    return {**module.choose_templates(train, settings), "correction": asdict(learned),
            "share": learned.share,
            "validation_error_alpaca": float(
                np.linalg.norm(estimates - train.points, axis=2).mean()),
            "validation_error": learned.validation_error}


def predict(task, model, inputs, config):
    module, settings = alpaca(task.name, config)
    placed = module.place(model, inputs, settings)  # no cache: test names are the split's
    learned = bias.BiasCorrection(**model["correction"])
    return {specimen: learned.apply(placed[specimen]) for specimen in inputs.ids}


def probabilities(task, model, inputs, config):
    """Coordinates are what landmark ensembles combine (mean or median per point)."""
    return predict(task, model, inputs, config)
