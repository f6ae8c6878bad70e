"""The README row of an MRI run: post-processing chosen on cross-validation, hidden split once.

    competition cv data/lgg-mri submissions/unet_mri --config CONFIG     # -> DIR/cv/unet_mri-T
    competition run data/lgg-mri submissions/unet_mri --config CONFIG    # -> DIR/runs/unet_mri-T
    python submissions/unet_mri/report.py data/lgg-mri DIR/runs/unet_mri-T DIR/cv/unet_mri-T

1. The choice, on training data only: the cross-validation's out-of-fold maps of
   the training patients are turned into masks with and without the per-patient largest
   connected component and scored against the training masks; the two are compared per
   patient (`competition.tasks.comparison.paired`: the paired bootstrap of the mean Dice and
   a Wilcoxon p), and the better mean Dice is chosen. Its cross-validated mean per-patient
   Dice, HD95 and ASSD come with bootstrap 95 % intervals over the training patients.
2. Then, once (organizers only: it reads the hidden solution), the run's test maps
   (`predictions.npz`) are post-processed the chosen way and scored on every hidden patient:
   the same three figures with their intervals, plus the run's training time.

Prints one JSON object per line: {"cv": ...}, {"comparison": ...}, {"hidden": ...}.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from competition.board.prepared import PreparedCompetition
from competition.formats import maps as maps_format
from competition.formats.files import SubmissionFile
from competition.tasks.comparison import paired, percentile_interval, resampling_weights

METRICS = ("dice", "hd", "hd95", "assd")  # the task's item values, in order


def item_table(task: Any, comp: PreparedCompetition, maps: dict[str, np.ndarray],
               inputs: Any, solution: Any, config: dict[str, Any]) -> tuple[np.ndarray, Any]:
    """Per-patient item values (patients, 4) of the maps post-processed with `config`."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "submission.zip"
        path.write_bytes(task.write_submission(inputs, task.predictions_from_maps(maps,
                                                                                  config)))
        with SubmissionFile(path, comp.limits) as submission:
            result = task.score(submission, solution)
    return np.array([task.item_values(row) for row in result.items], np.float64), result


def summary(table: np.ndarray) -> dict[str, Any]:
    """Mean per-patient Dice, HD95 and ASSD with 95 % bootstrap intervals over patients."""
    weights = resampling_weights(len(table))
    row: dict[str, Any] = {"patients": len(table)}
    for k, name in enumerate(METRICS):
        if name == "hd":
            continue
        row[name] = float(table[:, k].mean())
        row[f"{name}_ci95"] = list(percentile_interval(weights @ table[:, k] / len(table)))
    return row


def main(comp_dir: str, run_dir: str, cv_dir: str) -> None:
    comp = PreparedCompetition.open(comp_dir)
    task = comp.task
    run = json.loads((Path(run_dir) / "run.json").read_text())
    cv = json.loads((Path(cv_dir) / "cv.json").read_text())
    if (cv["entry"], cv["competition"]) != (run["entry"], run["competition"]):
        sys.exit(f"{cv_dir}: a cross-validation of {cv['entry']} on {cv['competition']}, not "
                 f"of the run's {run['entry']} on {run['competition']}")
    train = task.load_train(comp.public_dir)
    oof = maps_format.from_npz((Path(cv_dir) / "oof_maps.npz").read_bytes())
    with tempfile.TemporaryDirectory() as tmp:
        truths = task.load_solution(task.write_solution(train, Path(tmp) / "truth"))
    train_inputs = task.inputs_of(train)
    tables = {largest: item_table(task, comp, oof, train_inputs, truths,
                                  {**cv["config"], "largest_component": largest})[0]
              for largest in (False, True)}
    comparison = paired(task, tables[True], tables[False])
    largest = comparison.difference > 0
    print(json.dumps({"cv": {"folds": cv["k"], "largest_component": largest,
                             "fold_scores": [f["score"] for f in cv["folds"]],
                             **summary(tables[largest])}}))
    print(json.dumps({"comparison": {
        "a": "largest component", "b": "all components", **comparison.as_json(),
        "sentence": comparison.sentence("largest component", "all components")}}))
    # Chosen: the hidden patients are scored once.
    maps = maps_format.from_npz((Path(run_dir) / "predictions.npz").read_bytes())
    table, result = item_table(task, comp, maps, task.load_inputs(comp.public_dir),
                               comp.load_solution(),
                               {**run["config"], "largest_component": largest})
    print(json.dumps({"hidden": {"run": Path(run_dir).name, "largest_component": largest,
                                 "fit_minutes": round(run["fit_seconds"] / 60, 1),
                                 **summary(table),
                                 "infinite_distances": result.fields["n_infinite_distances"]}}))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:4])
