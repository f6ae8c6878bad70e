"""Learning curves of MRI runs: training loss and held-out Dice per epoch (no hidden data is
read), from runs' `run.json` or from cross-validations' `cv.json` (`competition cv
--curves`).

    competition cv data/lgg-mri submissions/unet_mri --curves       # -> data/lgg-mri/cv/...
    python submissions/unet_mri/curves.py docs/mri/learning-curves.png \
        data/lgg-mri/cv/unet_mri-<time> [data/lgg-mri/runs/unet_mri-<time> ...]

A cross-validation draws each fold's curve (its held-out patients' mean Dice, thin) and their
mean over folds (bold): the curve of a fifth of the training patients at each epoch. A run
has one training patient held out of fitting, so its Dice is noisy from epoch to epoch; a
running mean over 5 epochs is drawn over the raw values.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

WINDOW = 5


def label(run: dict[str, Any]) -> str:
    config = run["config"]
    parts = ["+ boundary" if "boundary" in config["loss"] else "Dice + BCE"]
    if config.get("context"):
        parts.append(f"2.5D (±{config['context']})")
    if config.get("lr_schedule", "constant") != "constant":
        parts.append(f"{config['lr_schedule']} lr")
    if config.get("crop"):
        parts.append(f"{config['crop']} px windows")
    if config.get("zoom"):
        parts.append("zoom")
    if config.get("rotate"):
        parts.append("turn")
    if config.get("missing_channels"):
        parts.append(f"{config['missing_channels']:.0%} FLAIR-only")
    # wrapped: a legend line as long as the recipe would push the axes aside
    return textwrap.fill(f"{', '.join(parts)}, {config['epochs']} epochs", 60)


def running_mean(values: np.ndarray) -> np.ndarray:
    kernel = np.ones(WINDOW) / WINDOW
    padded = np.pad(values, (WINDOW // 2, WINDOW - 1 - WINDOW // 2), mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def fold_curves(record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epochs, and each fold's training loss and held-out score at them (folds, epochs)."""
    curves = [fold["curve"] for fold in record["folds"]]
    if not all(curves):
        raise SystemExit(f"{record['out_dir']}: no learning curves (run `competition cv` "
                         "with --curves)")
    epochs = np.array([row["epoch"] for row in curves[0]])
    loss = np.array([[row["loss"] for row in curve] for curve in curves], float)
    score = np.array([[row["held_out_score"] for row in curve] for curve in curves], float)
    return epochs, loss, score


def draw_folds(left: Any, right: Any, record: dict[str, Any]) -> None:
    epochs, loss, score = fold_curves(record)
    name = f"{label(record)}, {record['k']}-fold cross-validation"
    line, = left.plot(epochs, loss.mean(axis=0), label=name)
    for fold in score:
        right.plot(epochs, fold, color=line.get_color(), alpha=0.25, linewidth=0.8)
    right.plot(epochs, score.mean(axis=0), color=line.get_color(), linewidth=2, label=name)


def main(out: str, *run_dirs: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for run_dir in run_dirs:
        if (Path(run_dir) / "cv.json").is_file():
            draw_folds(left, right, json.loads((Path(run_dir) / "cv.json").read_text()))
            continue
        run = json.loads((Path(run_dir) / "run.json").read_text())
        rows = run["history"]
        epoch = np.array([r["epoch"] for r in rows])
        loss = np.array([r["loss"] for r in rows], float)
        score = np.array([r.get("val_score") for r in rows], float)  # None: NaN
        line, = left.plot(epoch, loss, label=label(run))
        right.plot(epoch, score, color=line.get_color(), alpha=0.25)
        right.plot(epoch, running_mean(np.nan_to_num(score)), color=line.get_color(),
                   label=label(run))
    left.set(xlabel="epoch (40 batches of 8 slices)", ylabel="training loss",
             title="Training loss")
    right.set(xlabel="epoch", ylabel="Dice", ylim=(0, 1),
              title="Held-out training patients")
    left.legend(fontsize=8)
    right.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:])
