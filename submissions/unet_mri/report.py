"""The README rows of MRI recipes: the recipe and its post-processing chosen on
cross-validation, the hidden split scored once.

    competition cv data/lgg-mri submissions/unet_mri --config A.yaml      # -> DIR/cv/unet_mri-T1
    competition cv data/lgg-mri submissions/unet_mri --config B.yaml      # -> DIR/cv/unet_mri-T2
    python submissions/unet_mri/report.py data/lgg-mri DIR/cv/unet_mri-T1 DIR/cv/unet_mri-T2
    competition run data/lgg-mri submissions/unet_mri --config CHOSEN.yaml  # -> DIR/runs/...-T
    python submissions/unet_mri/report.py data/lgg-mri DIR/cv/... DIR/cv/... --run DIR/runs/...-T

1. The choice, on training data only. Each cross-validation's out-of-fold maps of the
   training patients are turned into masks with and without the per-patient largest
   connected component and scored against the training masks: two candidates per recipe.
   The candidate with the best mean per-patient Dice is chosen; it is compared with every
   other candidate over the same patients (`competition.tasks.comparison.paired`: the paired
   bootstrap of the mean Dice and a Wilcoxon p). The cross-validations must share their
   folds (the same patients held out together), so that they are paired. The chosen
   candidate's cross-validated mean per-patient Dice, HD95 and ASSD come with bootstrap 95 %
   intervals over the training patients.
2. Then, once (organizers only: it reads the hidden solution), with `--run`: a run of the
   chosen recipe on all training patients (its configuration is checked against the chosen
   cross-validation's) has its test maps (`predictions.npz`) post-processed the chosen way
   and scored on every hidden patient: the same three figures with their intervals, plus
   the run's training time.

Prints one JSON object per line: {"candidates": [...]}, {"comparisons": [...]}, {"cv": ...}
and, with --run, {"hidden": ...}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from competition.board.prepared import PreparedCompetition
from competition.entries import config_differences, resolve_config
from competition.formats import maps as maps_format
from competition.formats.files import SubmissionFile
from competition.tasks.comparison import paired, percentile_interval, resampling_weights
from competition.tasks.mri.data import stored_as_flair

METRICS = ("dice", "hd", "hd95", "assd")  # the task's item values, in order
# Keys that change neither the trained model nor its masks before post-processing.
NOT_RECIPE = {"largest_component", "snapshot_every", "verbose", "workers"}


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


def breakdown(table: np.ndarray, cases: list[str], voxels: dict[str, int],
              copies: dict[str, list[str]]) -> dict[str, Any]:
    """Where a candidate loses, patient by patient: mean Dice by quarter of the reference
    volume, by institution and by the sequences the data set stores as FLAIR copies (not
    acquired), and the patients at Dice 0 (fold-level evidence)."""
    from competition.tasks.mri.layout import institution

    dice = table[:, 0]
    sizes = np.array([voxels[c] for c in cases], np.float64)
    edges = np.quantile(sizes, [0.25, 0.5, 0.75])
    quarter = np.searchsorted(edges, sizes, side="right")  # 0..3, each patient once
    quarters = [{"voxels": [int(sizes[quarter == q].min()), int(sizes[quarter == q].max())],
                 "patients": int((quarter == q).sum()), "dice": float(dice[quarter == q].mean())}
                for q in range(4) if (quarter == q).any()]
    sites: dict[str, list[float]] = {}
    stored: dict[str, list[float]] = {}
    for case, value in zip(cases, dice, strict=True):
        sites.setdefault(institution(case), []).append(float(value))
        stored.setdefault(" and ".join(copies[case]) or "none", []).append(float(value))

    def means(groups: dict[str, list[float]]) -> dict[str, Any]:
        return {k: {"patients": len(v), "dice": float(np.mean(v))}
                for k, v in sorted(groups.items())}

    return {"by_volume_quarter": quarters, "by_institution": means(sites),
            "by_stored_as_flair": means(stored),
            "zero_dice": [c for c, value in zip(cases, dice, strict=True) if value == 0]}


def candidates(task: Any, comp: PreparedCompetition, cv_dirs: list[str]) -> list[dict[str, Any]]:
    """Two candidates per cross-validation (all components, largest component), each with
    its per-patient table over the training patients in one order."""
    train = task.load_train(comp.public_dir)
    with tempfile.TemporaryDirectory() as tmp:
        truths = task.load_solution(task.write_solution(train, Path(tmp) / "truth"))
    inputs = task.inputs_of(train)
    out: list[dict[str, Any]] = []
    first: dict[str, Any] | None = None
    for cv_dir in cv_dirs:
        cv = json.loads((Path(cv_dir) / "cv.json").read_text())
        entry = first["entry"] if first is not None else cv["entry"]
        if (cv["entry"], cv["competition"], cv["task"]) != (entry, comp.name, "mri"):
            sys.exit(f"{cv_dir}: a cross-validation of {cv['entry']} on {cv['competition']}, "
                     f"not of {entry} on the MRI competition {comp.name}")
        if first is not None and cv["assignment"] != first["assignment"]:
            sys.exit(f"{cv_dir}: its folds differ from {cv_dirs[0]}'s (another --folds or "
                     "--seed): the candidates would not be paired")
        first = first or cv
        oof = maps_format.from_npz((Path(cv_dir) / "oof_maps.npz").read_bytes())
        for largest in (False, True):
            table, result = item_table(task, comp, oof, inputs, truths,
                                       {**cv["config"], "largest_component": largest})
            out.append({"cv": str(cv_dir), "cv_record": cv, "largest_component": largest,
                        "table": table, "cases": [str(result.item_id(r)) for r in result.items],
                        "name": f"{Path(cv_dir).name} "
                                f"({'largest component' if largest else 'all components'})"})
    return out


def hidden_row(task: Any, comp: PreparedCompetition, run_dir: str,
               chosen: dict[str, Any]) -> dict[str, Any]:
    run = json.loads((Path(run_dir) / "run.json").read_text())
    cv = chosen["cv_record"]
    if (run["entry"], run["competition"]) != (cv["entry"], cv["competition"]):
        sys.exit(f"{run_dir}: a run of {run['entry']} on {run['competition']}, not of "
                 f"{cv['entry']} on {cv['competition']}")
    # A key the entry gained after one of the two was made counts as its default.
    defaults = resolve_config(Path(__file__).parent, "mri")
    differ = config_differences(run["config"], cv["config"], defaults, NOT_RECIPE)
    if differ:
        sys.exit(f"{run_dir}: not the chosen recipe ({chosen['cv']}): {', '.join(differ)} "
                 "differ; run `competition run` with that cross-validation's configuration")
    largest = chosen["largest_component"]
    maps = maps_format.from_npz((Path(run_dir) / "predictions.npz").read_bytes())
    inputs, solution = task.load_inputs(comp.public_dir), comp.load_solution()
    table, result = item_table(task, comp, maps, inputs, solution,
                               {**run["config"], "largest_component": largest})
    cases = [str(result.item_id(r)) for r in result.items]
    voxels = {case: int(np.count_nonzero(solution[case].truth)) for case in cases}
    return {"run": Path(run_dir).name, "largest_component": largest,
            "fit_minutes": round(run["fit_seconds"] / 60, 1), **summary(table),
            "infinite_distances": result.fields["n_infinite_distances"],
            # reported after the choice, never used for it
            **breakdown(table, cases, voxels, flair_copies(inputs))}


def flair_copies(data: Any) -> dict[str, list[str]]:
    return {case: stored_as_flair(volume)
            for case, volume in zip(data.cases, data.volumes, strict=True)}


def main(comp_dir: str, cv_dirs: list[str], run_dir: str | None = None) -> None:
    # The choice reads public/ only; the hidden solution only with a run to score.
    comp = PreparedCompetition.open(comp_dir, public_only=run_dir is None)
    task = comp.task
    found = candidates(task, comp, cv_dirs)
    chosen = max(found, key=lambda c: float(c["table"][:, 0].mean()))
    print(json.dumps({"candidates": [
        {"name": c["name"], "cv": c["cv"], "largest_component": c["largest_component"],
         "dice": float(c["table"][:, 0].mean()), "chosen": c is chosen} for c in found]}))
    comparisons = []
    for other in (c for c in found if c is not chosen):
        comparison = paired(task, chosen["table"], other["table"])
        comparisons.append({"a": chosen["name"], "b": other["name"], **comparison.as_json(),
                            "sentence": comparison.sentence(chosen["name"], other["name"])})
    print(json.dumps({"comparisons": comparisons}))
    cv = chosen["cv_record"]
    train = task.load_train(comp.public_dir)
    voxels = {case: int(np.count_nonzero(mask)) for case, mask in
              zip(train.cases, train.masks, strict=True)}
    print(json.dumps({"cv": {"cv": chosen["cv"], "folds": cv["k"],
                             "largest_component": chosen["largest_component"],
                             # as the cross-validation post-processed its folds
                             "fold_scores_as_run": [f["score"] for f in cv["folds"]],
                             **summary(chosen["table"]),
                             **breakdown(chosen["table"], chosen["cases"], voxels,
                                         flair_copies(train))}}))
    if run_dir is not None:  # chosen: the hidden patients are scored once
        print(json.dumps({"hidden": hidden_row(task, comp, run_dir, chosen)}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("competition")
    parser.add_argument("cv", nargs="+", help="`competition cv` folders, one per recipe")
    parser.add_argument("--run", help="a run of the chosen recipe: score its hidden "
                        "patients once")
    args = parser.parse_args()
    main(args.competition, args.cv, args.run)
