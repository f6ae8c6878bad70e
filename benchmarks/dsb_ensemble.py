"""The U-Net + multi-arm U-Net ensemble of two `competition run` runs, its weight and watershed
settings chosen on the two entries' out-of-fold maps of the training images (`competition cv`),
then applied to the hidden split, scored once, and to Kaggle's stage-1 test.

    competition cv data/dsb2018-mirrored submissions/unet          # -> DIR/cv/unet-TIME
    competition cv data/dsb2018-mirrored submissions/multiarm_unet # -> DIR/cv/multiarm_unet-TIME
    python benchmarks/dsb_ensemble.py data/dsb2018-mirrored RUN_A RUN_B --cv CV_A CV_B
        [--predict ../shared/data/dsb2018/stage1_test] [--weights 0 0.25 0.5 0.75 1]
        [--fg 0.5 0.6 0.7] [--marker 0.5 0.7 0.8 0.9] [--boundary-weight 1 2 3]
        [--min-size 5 10 20]

RUN_A and RUN_B are run folders (`DIR/runs/unet-TIME`, `DIR/runs/multiarm_unet-TIME`) of the
same competition, each with its `predictions.npz` (the hidden images' maps), `run.json` and
`model/model.keras`; CV_A and CV_B the same entries' cross-validation folders, each with its
`oof_maps.npz` (every training image predicted by the fold model that did not train on it).

1. The weight of RUN_A (RUN_B gets the rest) and the watershed settings are chosen by the
   official score of the out-of-fold maps against the training labels: nothing of the hidden
   split (its public images included) informs the choice. The settings compete from RUN_A's
   and RUN_B's own (run.json's report) and a grid (`--fg`, `--marker`, `--boundary-weight`,
   `--min-size`): the averaged map is smoother than either member's, so the members'
   thresholds need not suit it.
2. Then the hidden split's solution is read for the first time: the chosen ensemble's
   submission of the hidden images is written and scored once (public, private, whole split
   and per image type: the organizers' view, for the README).
3. With `--predict FOLDER`: both models predict the folder (each entry's own
   `probabilities`: its pixels, scale and test-time augmentation), the maps are combined with
   the chosen weight and post-processed alike, and `FOLDER-NAME_submission.csv` is written.

Writes into DIR/runs/ensemble-dsb-TIME/ (ensemble.json and the files); submits nothing (the
files can be submitted with `competition submit`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def load_run(folder: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """The run's record, hidden-image maps and post-processing settings (`keys`: the
    task's)."""
    from competition.formats import maps as maps_format

    record = json.loads((folder / "run.json").read_text())
    if record.get("final"):
        raise SystemExit(f"{folder}: a final fit (trained on the hidden images too): it has "
                         "no hidden-image maps to ensemble; give the runs made without --final")
    return {"folder": folder, "record": record, "entry": record["entry"],
            "maps": maps_format.from_npz((folder / "predictions.npz").read_bytes(),
                                         str(folder / "predictions.npz")),
            "postprocess": {**{k: record["config"][k] for k in
                               keys if k in record["config"]},
                            **((record.get("report") or {}).get("postprocess") or {})}}


def trained_model(run: dict[str, Any]) -> Any:
    """The run's model as its entry predicts with it (network, configuration, the scale
    calibration and the settings it chose)."""
    import keras

    from models.segmentation import Trained

    record = run["record"]
    network = keras.models.load_model(run["folder"] / "model" / "model.keras", compile=False)
    report = record.get("report") or {}
    return Trained(network, {**record["config"], "arms": len(network.inputs) > 1},
                   scale_calibration=report.get("scale_calibration", 1.0),
                   postprocess=report.get("postprocess") or {})


def entry_module(name: str) -> Any:
    path = REPO / "submissions" / name / "entry.py"
    spec = importlib.util.spec_from_file_location(f"entry_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("competition", type=Path)
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--cv", type=Path, nargs=2, required=True, metavar=("CV_A", "CV_B"),
                        help="the two entries' `competition cv` folders (oof_maps.npz)")
    parser.add_argument("--weights", type=float, nargs="+", default=[0, 0.25, 0.5, 0.75, 1])
    parser.add_argument("--fg", type=float, nargs="*", default=[0.5, 0.6, 0.7],
                        help="foreground thresholds of the settings grid")
    parser.add_argument("--marker", type=float, nargs="*", default=[0.5, 0.7, 0.8, 0.9],
                        help="marker thresholds of the settings grid")
    parser.add_argument("--boundary-weight", type=float, nargs="*", default=[1.0, 2.0, 3.0],
                        help="boundary weights of the settings grid (markers: foreground "
                             "less this times the boundary)")
    parser.add_argument("--min-size", type=int, nargs="*", default=[5, 10, 20],
                        help="smallest objects (px) of the settings grid")
    parser.add_argument("--predict", type=Path, help="also predict this folder")
    args = parser.parse_args()

    from competition.board.prepared import PreparedCompetition
    from competition.board.scoring import Scorer
    from competition.ensembles.combine import combine
    from competition.formats import maps as maps_format
    from competition.formats.files import SubmissionFile
    from competition.outputs import fresh_folder
    from models.tuning import grid_points

    comp = PreparedCompetition.open(args.competition)
    task = comp.task
    runs = [load_run(args.run_a, task.postprocess_keys),
            load_run(args.run_b, task.postprocess_keys)]
    oof = [maps_format.from_npz((folder / "oof_maps.npz").read_bytes(),
                                str(folder / "oof_maps.npz")) for folder in args.cv]
    train = task.load_train(comp.public_dir)
    for folder, maps, run in zip(args.cv, oof, runs, strict=True):
        if set(maps) != set(train.ids):
            sys.exit(f"{folder}: its out-of-fold maps are not of this competition's "
                     "training images")
        made_by = json.loads((folder / "cv.json").read_text())["entry"]
        if made_by != run["entry"]:
            sys.exit(f"{folder}: a cross-validation of {made_by}, not of {run['entry']} "
                     f"(the run {run['folder']}); give the --cv folders in the runs' order")
    out_dir = fresh_folder(comp.root / "runs", "ensemble-dsb")
    train_inputs = task.inputs_of(train)

    def submission(maps: dict[str, Any], settings: dict[str, Any], path: Path,
                   data: Any) -> Path:
        path.write_bytes(task.write_submission(data, task.predictions_from_maps(maps,
                                                                                settings)))
        return path

    grid = [(run["entry"], run["postprocess"]) for run in runs]
    grid += [("grid", s) for s in grid_points(task.postprocess_keys, {
        "fg_threshold": args.fg, "marker_threshold": args.marker,
        "boundary_weight": args.boundary_weight, "min_size": args.min_size})]
    candidates = []
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        truths = task.load_solution(task.write_solution(train, Path(tmp) / "truth"))
        for w in args.weights:
            maps = combine(oof, "mean", [w, 1 - w])
            for k, (origin, settings) in enumerate(grid):
                path = submission(maps, settings, Path(tmp) / f"{w}-{k}.csv", train_inputs)
                with SubmissionFile(path, comp.limits) as f:
                    score = task.score(f, truths).score
                candidates.append({"weight_a": w, "settings_of": origin,
                                   "settings": settings, "oof_score": score})
    best = max(candidates, key=lambda c: (c["oof_score"], -abs(c["weight_a"] - 0.5)))
    weights = [best["weight_a"], 1 - best["weight_a"]]
    # Chosen: now, and only now, the hidden split is scored, once.
    scorer = Scorer.load(comp)
    combined = combine([r["maps"] for r in runs], "mean", weights)
    path = submission(combined, best["settings"], out_dir / "submission.csv",
                      task.load_inputs(comp.public_dir))
    result = scorer.score(comp.submission(path))
    record: dict[str, Any] = {
        "competition": comp.name, "members": [str(r["folder"]) for r in runs],
        "cross_validation": [str(f) for f in args.cv],
        "chosen_on": "out-of-fold maps of the training images", "candidates": candidates,
        "chosen": best, "submission": str(path), "score": result.score,
        "public": result.public, "private": result.private,
        "per_type": result.fields.get("per_type")}
    if args.predict is not None:
        folder_inputs = task.load_inputs(comp.public_dir, args.predict)
        member_maps = []
        for run in runs:
            entry = entry_module(run["entry"])
            member_maps.append(entry.probabilities(task, trained_model(run), folder_inputs,
                                                   run["record"]["config"]))
        extra = submission(combine(member_maps, "mean", weights), best["settings"],
                           out_dir / f"{args.predict.name}_submission.csv", folder_inputs)
        record["also_predicted"] = str(extra)
    (out_dir / "ensemble.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    print(json.dumps({k: record[k] for k in ("chosen", "score", "public", "private",
                                             "per_type", "submission")}, indent=1,
                     default=str))
    if record.get("also_predicted"):
        print(f"wrote {record['also_predicted']}")


if __name__ == "__main__":
    main()
