"""Baselines: training entries, ensembles and their inputs."""

from __future__ import annotations

from pathlib import Path

import typer

from competition.interfaces.cli.output import (
    escape,
    fmt,
    out,
    print_json,
)
from competition.interfaces.cli.root import app


@app.command("run")
def run_entry(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    entry: Path = typer.Argument(..., help="An entry folder, e.g. submissions/unet."),
    config: Path | None = typer.Option(None, help="A configuration file on top of the "
                                       "entry's config.yaml (e.g. its smoke.yaml)."),
    set_: list[str] = typer.Option([], "--set", help="key=value overrides (repeatable); "
                                   "TASK.key=value for one task only."),
    inputs: Path | None = typer.Option(None, help="Predict this folder instead of the test "
                                       "set (in the data set's layout); not submitted."),
    team: str | None = typer.Option(None, help="Team to submit as (default: "
                                    "baseline-ENTRY)."),
    no_submit: bool = typer.Option(False, "--no-submit", help="Write the file only."),
    also_predict: Path | None = typer.Option(None, help="Also predict this folder with the "
                                             "same model (e.g. DSB's stage1_test)."),
    as_participant: bool = typer.Option(False, "--as-participant", help="Submit as a "
                                        "participant team, not as a baseline (baselines "
                                        "are marked on the board and left out of grades)."),
    final: bool = typer.Option(False, "--final", help="The organizers' final fit, once "
                               "every choice is made: train on the training data and the "
                               "hidden items with their labels, and write only the "
                               "--also-predict folder's file (the hidden split is neither "
                               "predicted nor scored)."),
) -> None:
    """Train an entry on the public training data, predict, write and submit the file."""
    from competition.training.run import run

    record = run(directory, entry, config, set_, inputs=inputs, team=team,
                 submit=not no_submit, also_predict=also_predict, baseline=not as_participant,
                 final=final)
    if record.get("also_predicted"):
        out(f"also predicted {also_predict}: {record['also_predicted']}")
    if record["final"]:
        out(f"trained {record['entry']} on the training and hidden items in "
            f"{record['fit_seconds']:.1f} s (final fit)")
    else:
        out(f"trained {record['entry']} in {record['fit_seconds']:.1f} s, predicted in "
            f"{record['predict_seconds']:.1f} s; wrote {record['submission']}")
    if "public_score" in record:
        out(f"submission {record['submission_id']}: {record['status']}, public score "
            f"{fmt(record['public_score'])}")
    if record.get("mlflow_run_id"):
        out(f"MLflow run {record['mlflow_run_id']} (see `competition ui`)")


@app.command("cv")
def cross_validate(
    directory: Path = typer.Argument(..., help="A prepared competition (only its "
                                     "configuration and public/ are read)."),
    entry: Path = typer.Argument(..., help="An entry folder, e.g. submissions/unet."),
    folds: int = typer.Option(5, "--folds", help="Number of folds (K)."),
    config: Path | None = typer.Option(None, help="A configuration file on top of the "
                                       "entry's config.yaml (e.g. its smoke.yaml)."),
    set_: list[str] = typer.Option([], "--set", help="key=value overrides (repeatable); "
                                   "TASK.key=value for one task only."),
    seed: int = typer.Option(0, help="Seed of the fold assignment."),
    curves: bool = typer.Option(False, "--curves", help="Learning curves: score each "
                                "fold's held-out items after every epoch the entry reports "
                                "with its model (slower)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: `folds` "
                                 "(per-fold results), `mean` and the rest of cv.json."),
    toward: str | None = typer.Option(None, "--toward", help="Also weigh the out-of-fold "
                                      "scores toward these test inputs (a folder in the "
                                      "data set's layout, or `test`: the competition's "
                                      "public test inputs) by adversarial validation: an "
                                      "estimate for items drawn like them."),
    groups: str | None = typer.Option(None, "--groups", help="Group the training items "
                                      "another way the task offers (nuclei: `source`, whole "
                                      "acquisition sets held out together) instead of its "
                                      "own (nuclei: one image each)."),
    resume: Path | None = typer.Option(None, "--resume", help="Take up an unfinished "
                                       "cross-validation (its folder under DIR/cv) with the "
                                       "same entry, configuration, folds, seed, "
                                       "--groups and --curves: finished "
                                       "folds are kept, the others run."),
) -> None:
    """K-fold cross-validation of an entry on the public training data.

    Prints per-fold official scores, their mean and a bootstrap interval over the out-of-fold
    items; keeps the out-of-fold predictions and logs to MLflow (a parent run, a child per
    fold)."""
    from rich.table import Table

    from competition.formats.jsonsafe import jsonable
    from competition.training.cv import cross_validate as run_cv

    record = run_cv(directory, entry, config, set_, folds=folds, seed=seed, curves=curves,
                    resume=resume, toward=toward, groups=groups)
    if as_json:
        print_json(jsonable(record))
        return
    table = Table("fold", "trained on", "held out", "score", "fit (s)", "predict (s)",
                  title=f"{escape(record['entry'])} on {escape(record['competition'])}: "
                  f"{record['metric']}, {record['k']} folds"
                  + (f" of {escape(record['groups'])} groups" if record.get("groups") else ""))
    for fold in record["folds"]:
        table.add_row(str(fold["fold"]), str(fold["train_items"]), str(fold["items"]),
                      f"{fold['score']:.4f}", f"{fold['fit_seconds']:.1f}",
                      f"{fold['predict_seconds']:.1f}")
    out(table)
    pooled = record["pooled"]
    out(f"mean over folds {record['mean']:.4f} (sd {record['std']:.4f}); all "
        f"{pooled['n']} out-of-fold items {pooled['score']:.4f}, 95 % bootstrap interval "
        f"{pooled['low']:.4f} to {pooled['high']:.4f}")
    if record.get("toward"):
        weighed = record["toward"]
        out(f"weighed toward {escape(weighed['folder'])} (adversarial validation): "
            f"{weighed['score']:.4f}, 95 % bootstrap interval {weighed['low']:.4f} to "
            f"{weighed['high']:.4f}; training and test items told apart with ROC AUC "
            f"{weighed['auc']:.3f}, {weighed['effective_items']:.0f} effective items of "
            f"{weighed['items']}")
    out(f"wrote {escape(record['out_dir'])}/cv.json"
        + (f" and {escape(record['oof_maps'])}" if record.get("oof_maps") else ""))
    if record.get("mlflow_run_id"):
        out(f"MLflow run {record['mlflow_run_id']} (a child run per fold)")


@app.command("cv-compare")
def compare_cvs(
    first: Path = typer.Argument(..., help="A `competition cv` folder (A)."),
    second: Path = typer.Argument(..., help="Another one on the same folds (B)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Two cross-validations on the same folds, paired item by item: how much better A is.

    The difference of their out-of-fold scores (positive: A better, whichever way the metric
    runs) with a paired 95 % bootstrap interval and a Wilcoxon signed-rank p, overall, per
    fold and per stratum; folds only one of them finished are left out and named."""
    from rich.table import Table

    from competition.formats.jsonsafe import jsonable
    from competition.training.cv_compare import compare

    found = compare(first, second)
    if as_json:
        print_json(jsonable(found))
        return
    for side in ("a", "b"):
        out(f"{side.upper()}: {escape(found[side]['name'])} ({escape(found[side]['entry'])})")
    for key, (value_a, value_b) in (found["config_changes"] or {}).items():
        out(f"{escape(key)}: {escape(str(value_a))} (A) -> {escape(str(value_b))} (B)")

    def better(row: dict[str, float]) -> tuple[str, str, str]:
        return (f"{row['difference']:+.4f}", f"{row['low']:+.4f} to {row['high']:+.4f}",
                f"{row['wilcoxon_p']:.3g}")

    table = Table("fold", "items", "A", "B", "A better by", "95 % interval",
                  "Wilcoxon p",
                  title=f"{escape(found['competition'])}: {found['metric']}")
    for fold in found["per_fold"]:
        table.add_row(str(fold["fold"]), str(fold["n"]), f"{fold['a']:.4f}",
                      f"{fold['b']:.4f}", *better(fold))
    out(table)
    if found["per_stratum"]:
        strata = Table("stratum", "items", "A better by", "95 % interval",
                       "Wilcoxon p")
        for name, row in found["per_stratum"].items():
            strata.add_row(escape(name), str(row["n"]), *better(row))
        out(strata)
    if found["strata_too_small"]:
        out(f"too few items for a row: {escape(', '.join(found['strata_too_small']))}")
    left = found["folds_left_out"]
    if left:
        out(f"fold{'s' if len(left) > 1 else ''} {', '.join(map(str, left))} left out (not "
            "finished in both)")
    out(escape(found["sentence"]))


@app.command("pack")
def pack(
    entry: Path = typer.Argument(..., help="An entry folder, e.g. submissions/unet."),
    out_file: Path = typer.Option(..., "--out", help="The zip to write (a code "
                                  "submission)."),
    model: Path | None = typer.Option(None, help="A fitted model to carry as model/: a "
                                      "run's DIR/runs/ENTRY-TIME/model (the entry must "
                                      "define load)."),
    # pack.DEFAULT_MAX_MB, written out: importing it here would load YAML and pydantic
    # for every command's start-up.
    max_mb: float = typer.Option(200.0, "--max-mb", help="Refuse a zip above this many MB "
                                 "(the competition's upload limit)."),
) -> None:
    """Zip an entry folder as a code submission.

    Its files go at the top level (no caches, hidden files or old model/; no symlinks),
    optionally with a fitted model as model/; the same folder always gives the same bytes."""
    from competition.training.pack import pack_entry

    def size(n: int) -> str:
        return f"{n / 1024:.1f} kB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MB"

    report = pack_entry(entry, out_file, model, max_mb=max_mb)
    out(f"packed {report.files} files ({size(report.size)}, {size(report.unpacked)} "
        f"unpacked) into {escape(str(report.out))}"
        + (f", with model/ from {escape(str(report.model))}" if report.model else ""))


@app.command()
def ensemble(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    members: list[str] = typer.Argument(..., help="MLflow run ids or submission ids of runs "
                                        "that logged test predictions."),
    method: str = typer.Option("mean", help="mean, median or greedy (forward selection "
                               "with replacement, chosen on out-of-fold maps: needs --cv)."),
    weights: list[float] | None = typer.Option(None, "--weights", help="One per member "
                                               "(repeat the option), for --method mean."),
    cv: list[Path] | None = typer.Option(None, "--cv", help="Greedy: a `competition cv` "
                                         "folder of each member's entry and configuration "
                                         "(repeat the option, in member order); greedy "
                                         "scores bags on their out-of-fold maps."),
    rounds: int = typer.Option(10, help="Greedy: the most members added."),
    team: str = typer.Option("ensemble", help="Team to submit as. With --as-participant "
                             "every member must be this team's own run; as a baseline, no "
                             "member may be a participant team's."),
    no_submit: bool = typer.Option(False, "--no-submit", help="Write the file only."),
    as_participant: bool = typer.Option(False, "--as-participant", help="Submit as a "
                                        "participant team, not as a baseline."),
) -> None:
    """Combine runs' prediction maps into one submission, submit it and log it to MLflow.

    Only the team's own runs can be combined: runs whose tag `team` is --team (`competition
    run --team T` and ensembles set it); as a baseline (the default), runs of teams that are
    not participant teams on the board. Greedy chooses its members on the training data's
    out-of-fold maps (`competition cv DIR ENTRY` per member, then --cv for each), never on the
    hidden split."""
    from rich.table import Table

    from competition.ensembles.build import build

    record = build(directory, members, method, weights=weights or None, rounds=rounds,
                   team=team, submit=not no_submit, baseline=not as_participant, cv=cv)
    table = Table("member", "MLflow run", "public score", "weight")
    weights_used = record["weights"] or [None] * len(record["members"])
    for m, w in zip(record["members"], weights_used, strict=True):
        table.add_row(escape(m["ref"]), escape(m["name"]), fmt(m["public_score"]),
                      "-" if w is None else f"{w:.3f}")
    out(table)
    if record["greedy_oof_scores"]:
        out("greedy out-of-fold scores by round: "
            + ", ".join(f"{v:.4f}" for v in record["greedy_oof_scores"]))
    out(f"wrote {record['submission']}")
    if "submission_id" in record:
        out(f"submission {record['submission_id']}: {record['status']}, public score "
            f"{fmt(record['public_score'])}"
            + (f" ({escape(record['error'])})" if record.get("error") else ""))
    if record.get("mlflow_run_id"):
        out(f"MLflow run {record['mlflow_run_id']}")
