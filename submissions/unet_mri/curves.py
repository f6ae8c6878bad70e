"""Learning curves of MRI runs: training loss and the held-out training patient's Dice per
epoch, one line per run, from each run's `run.json` (no hidden data is read).

    python submissions/unet_mri/curves.py docs/mri/learning-curves.png \
        data/lgg-mri/runs/unet_mri-<time> [more runs...]

The validation patient is one training patient held out of fitting, so its Dice is noisy
from epoch to epoch; a running mean over 5 epochs is drawn over the raw values.
"""

from __future__ import annotations

import json
import sys
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
    return f"{', '.join(parts)}, {config['epochs']} epochs"


def running_mean(values: np.ndarray) -> np.ndarray:
    kernel = np.ones(WINDOW) / WINDOW
    padded = np.pad(values, (WINDOW // 2, WINDOW - 1 - WINDOW // 2), mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def main(out: str, *run_dirs: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for run_dir in run_dirs:
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
              title=f"Held-out training patient (running mean of {WINDOW})")
    left.legend(fontsize=8)
    right.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:])
