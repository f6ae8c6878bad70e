"""The README row of an MRI run, both ways (organizers only: it reads the hidden solution).

    python submissions/unet_mri/report.py data/lgg-mri data/lgg-mri/runs/unet_mri-<time>

Turns the run's test maps (`predictions.npz`) into masks with and without the per-patient
largest connected component, scores both on every hidden patient, and prints mean
per-patient Dice, HD95 and ASSD (mm) with bootstrap 95 % intervals over patients (1000
resamples, fixed seed), plus the run's training time, as JSON lines.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from competition.board.prepared import PreparedCompetition
from competition.formats import maps as maps_format

N_BOOTSTRAP = 1000


def interval(values: np.ndarray, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), (N_BOOTSTRAP, len(values)))
    return [float(q) for q in np.percentile(values[picks].mean(axis=1), [2.5, 97.5])]


def main(comp_dir: str, run_dir: str) -> None:
    comp = PreparedCompetition.open(comp_dir)
    task, solution = comp.task, comp.load_solution()
    run = json.loads((Path(run_dir) / "run.json").read_text())
    maps = maps_format.from_npz((Path(run_dir) / "predictions.npz").read_bytes())
    inputs = task.load_inputs(comp.public_dir)
    for largest in (False, True):
        config = {**run["config"], "largest_component": largest}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "submission.zip"
            path.write_bytes(task.write_submission(inputs, task.predictions_from_maps(
                maps, config)))
            result = task.score(comp.submission(path), solution)
        table = np.array([task.item_values(row) for row in result.items])
        row = {"run": Path(run_dir).name, "largest_component": largest,
               "fit_minutes": round(run["fit_seconds"] / 60, 1),
               "patients": len(table)}
        for k, name in enumerate(("dice", "hd", "hd95", "assd")):
            row[name] = float(table[:, k].mean())
            row[f"{name}_ci95"] = interval(table[:, k])
        row["infinite_distances"] = result.fields["n_infinite_distances"]
        print(json.dumps(row))


if __name__ == "__main__":
    main(*sys.argv[1:3])
