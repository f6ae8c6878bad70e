"""`competition run DIR submissions/ENTRY`: train an entry, predict, write, submit.

The entry (see `competition.entries`) trains on the competition's public training
data less one held-out validation item (the task chooses it), predicts the test inputs, and
the task writes the submission file. Everything a run produced lands in
`DIR/runs/<entry>-<time>/`: the submission, the model, the validation pictures, the test maps,
and `run.json` (configuration, timings, training history, score). It is logged as an MLflow
training run (see competition.tracking).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from competition.board.prepared import PreparedCompetition
from competition.entries import load_entry, resolve_config
from competition.errors import CompetitionError
from competition.formats import maps as maps_format
from competition.formats.jsonsafe import jsonable
from competition.formats.pictures import gif
from competition.outputs import fresh_folder
from competition.progress import bar
from competition.tasks.base import AnyTask, Maps, Validation
from competition.tracking import runs as tracking


@dataclass(frozen=True)
class RunOptions:
    """What a `competition run` predicts and where its file goes."""

    inputs: Path | None = None  # predict this folder instead of the test set (not submitted)
    team: str | None = None  # who made the run (default: baseline-ENTRY)
    submit: bool = True
    also_predict: Path | None = None  # a further folder the same model predicts
    baseline: bool = True  # submitted as the organizers' baseline
    final: bool = False  # trained on the hidden items too; writes the also_predict file only


@dataclass(frozen=True)
class _Run:
    """One run's fixed parts, as the training and prediction stages share them."""

    comp: PreparedCompetition
    entry: ModuleType
    config: dict[str, Any]
    name: str
    out_dir: Path
    tracked: tracking.TrainingRun
    timings: dict[str, Any]
    options: RunOptions


def run(comp_dir: Path, entry_dir: Path, config_file: Path | None = None,
        overrides: list[str] | None = None, *, inputs: Path | None = None,
        team: str | None = None, submit: bool = True, also_predict: Path | None = None,
        baseline: bool = True, final: bool = False) -> dict[str, Any]:
    """Train, predict, write and (for the competition's own test set) submit, as an
    organizers' baseline unless `baseline` is False; with `also_predict`, the same model also
    predicts that folder (e.g. DSB's stage1_test). `final`: the organizers' final fit, once
    every choice is made on cross-validation: trained on the training data and the hidden
    items with their labels (the task's `with_hidden`), it predicts the `also_predict`
    folder only; the hidden split, trained on, is neither predicted nor scored."""
    if final and (also_predict is None or inputs is not None or not baseline):
        raise CompetitionError("--final trains on the hidden items too: it writes only the "
                               "--also-predict folder's file (required), and is the "
                               "organizers' (not with --inputs or --as-participant)")
    options = RunOptions(inputs, team, submit and not final, also_predict, baseline, final)
    comp = PreparedCompetition.open(comp_dir)
    task = comp.task
    config = resolve_config(entry_dir, task.name, config_file, overrides or [])
    entry = load_entry(entry_dir)
    name = Path(entry_dir).resolve().name
    timings: dict[str, Any] = {}
    run_start = time.perf_counter()
    with bar("Loading the training data"), _timed(timings, "load_data"):
        train = task.load_train(comp.public_dir)
        if final:
            # Every labelled item is fitted: no validation item (one drawn among the hidden
            # items would show its labels in the pictures and scores).
            train, validation = task.with_hidden(train, task.load_inputs(comp.public_dir),
                                                 comp.load_solution()), None
        else:
            train, validation = task.hold_out(train, config.get("seed", 0))
    out_dir = fresh_folder(comp.root / "runs", name)
    stamp = out_dir.name.removeprefix(f"{name}-")
    # `team`: who made the run (an ensemble combines only its own team's runs).
    tags = {"kind": "training", "competition": comp.name, "task": task.name, "entry": name,
            "team": team or f"baseline-{name}", **({"final": "true"} if final else {})}
    # A final fit learnt the hidden labels: its model is the organizers' alone.
    with tracking.training_run(comp.key, f"{name}-{stamp}", tags,
                               audience="organizers" if final else "participants") as tracked:
        tracked.log(params={**flat_config(config), "entry": name, "competition": comp.name,
                            "task": task.name, "validation_item": validation.name
                            if validation else "none"})
        record = _train_predict_submit(
            _Run(comp, entry, config, name, out_dir, tracked, timings, options),
            train, validation)
        timings["total"] = time.perf_counter() - run_start
        record["timings"] = _rounded(timings)
        metrics = {k: record.get(k) for k in ("fit_seconds", "predict_seconds",
                                              "images_per_second", "public_score",
                                              "val_score")}
        tracked.log(metrics={k: v for k, v in {**metrics, **record["speeds"]}.items()
                             if isinstance(v, (int, float))},
                    tags={"submission_id": record.get("submission_id", "none"),
                          "mlflow.note.content": f"`competition run` of {name} on {comp.name}"})
        record["mlflow_run_id"] = tracked.run_id
        (out_dir / "run.json").write_text(json.dumps(jsonable(record, max_items=64),
                                                     indent=1) + "\n")
        tracked.log_file(out_dir / "run.json")
    return record


def _train_predict_submit(the_run: _Run, train: Any,
                          validation: Validation[Any] | None) -> dict[str, Any]:
    """Per-stage seconds go into `timings` (run.json's "timings"): each epoch's training
    (from the end of the previous epoch's validation picture, so the first includes the
    entry's own setup) and its validation picture, the final picture and the GIF, saving the
    model, loading and predicting the test inputs (maps, then predictions), writing the file,
    the extra folder (`also_predict`) and scoring."""
    comp, entry, config, name = the_run.comp, the_run.entry, the_run.config, the_run.name
    out_dir, tracked, timings = the_run.out_dir, the_run.tracked, the_run.timings
    inputs, also_predict = the_run.options.inputs, the_run.options.also_predict
    task = comp.task
    epoch_rows: list[dict[str, Any]] = []
    timings["epochs"] = epoch_rows
    has_maps = callable(getattr(entry, "probabilities", None))
    history: list[dict[str, Any]] = []
    frames: list[tuple[Any, str]] = []

    def snapshot(model: Any, caption: str) -> float | None:
        if validation is None or not has_maps:
            return None
        with _timed(timings, "validation_pictures"):
            maps = entry.probabilities(task, model, validation.inputs, config)
            frame, score = task.snapshot(maps, validation, config)
        frames.append((frame, f"{caption}  val {score:.3f}"))
        return score

    epochs = config.get("epochs") if isinstance(config.get("epochs"), int) else None
    with bar(f"Training {name}" + (" (epochs)" if epochs else ""), epochs) as shown:
        def on_epoch(epoch: int, logs: dict[str, Any], model: Any = None) -> None:
            now = time.perf_counter()
            timing = {"epoch": epoch + 1, "train": now - marks[-1], "validation_picture": 0.0}
            row = {"epoch": epoch + 1, **logs}
            if model is not None:
                row["val_score"] = snapshot(model, f"epoch {epoch + 1}")
                timing["validation_picture"] = time.perf_counter() - now
            epoch_rows.append(timing)
            history.append(row)
            tracked.log_epoch(epoch + 1, {k: v for k, v in row.items()
                                          if k != "epoch" and v is not None})
            loss = logs.get("loss")
            shown.advance(note=f"loss {loss:.4f}" if isinstance(loss, float) else None)
            marks.append(time.perf_counter())

        start = time.perf_counter()
        marks = [start]
        model = entry.fit(task, train, config, on_epoch=on_epoch)
        fit_seconds = time.perf_counter() - start
    timings["fit"] = fit_seconds
    val_score = snapshot(model, "final")
    if frames:
        with _timed(timings, "validation_pictures"):
            (out_dir / "validation.gif").write_bytes(gif([f for f, _ in frames],
                                                         [c for _, c in frames]))
        tracked.log_file(out_dir / "validation.gif", "validation")
    with _timed(timings, "save_model"):
        _save_model(entry, model, out_dir / "model")
    tracked.log_file(out_dir / "model", "model")

    final = the_run.options.final
    path, predict_seconds = None, 0.0
    if not final:  # a final fit trained on the test items: they are not predicted
        path, predict_seconds = _predict_test_inputs(the_run, model, has_maps)
    extra_path = None
    if also_predict is not None:
        with _timed(timings, "also_predict"):
            extra_inputs = task.load_inputs(comp.public_dir, also_predict)
            extra_path = out_dir / (f"{Path(also_predict).name}_submission"
                                    + task.submission_suffix)
            extra_path.write_bytes(task.write_submission(
                extra_inputs, entry.predict(task, model, extra_inputs, config)))
        tracked.log_file(extra_path, "submission")
    record: dict[str, Any] = {
        "entry": name, "competition": comp.name, "task": task.name, "config": config,
        "fit_seconds": round(fit_seconds, 2),
        "predict_seconds": None if final else round(predict_seconds, 2),
        "images_per_second": getattr(model, "images_per_second", None),
        "speeds": _speeds(model),
        "validation_item": validation.name if validation else None, "val_score": val_score,
        "report": getattr(model, "report", None),
        "history": history, "submission": None if path is None else str(path),
        "inputs": None if final else str(inputs or "test"), "final": final,
        "predictions": str(out_dir / "predictions.npz")
        if has_maps and inputs is None and not final else None,
        "also_predicted": str(extra_path) if extra_path else None,
        "hardware": f"{platform.machine()}, {_cpu_count()} CPU cores",
    }
    if the_run.options.submit and inputs is None and path is not None:
        from competition.board.board import Board
        from competition.board.scorer_process import ChildScorer

        # Training libraries leave threads running: score in processes from a fork server.
        board = Board(comp, scorer=ChildScorer("forkserver"))
        with bar("Scoring the submission"), _timed(timings, "score"):
            outcome = board.submissions.submit(path, the_run.options.team or
                                               f"baseline-{name}", f"competition run {name}",
                                               baseline=the_run.options.baseline)
        record["submission_id"] = outcome.id
        record["status"] = outcome.status
        record["public_score"] = outcome.public_score
        if outcome.error:
            record["error"] = outcome.error
    return record


def _predict_test_inputs(the_run: _Run, model: Any, has_maps: bool) -> tuple[Path, float]:
    """The test inputs (or `inputs`) predicted and written as the submission file, their
    maps kept; the file and the prediction's seconds."""
    comp, entry, config, out_dir = the_run.comp, the_run.entry, the_run.config, the_run.out_dir
    task, timings, tracked, inputs = comp.task, the_run.timings, the_run.tracked, \
        the_run.options.inputs
    with _timed(timings, "load_inputs"):
        test_inputs = task.load_inputs(comp.public_dir, inputs)
    start = time.perf_counter()
    with bar("Predicting the test inputs"):
        with _timed(timings, "predict_maps"):
            maps = entry.probabilities(task, model, test_inputs, config) if has_maps else None
        if maps is not None and inputs is None:
            with _timed(timings, "write_maps"):
                (out_dir / "predictions.npz").write_bytes(maps_format.to_npz(maps,
                                                                             task.map_dtype))
            tracked.log_file(out_dir / "predictions.npz", "predictions")
        with _timed(timings, "predict"):
            predictions = predictions_of(task, entry, model, test_inputs, config, maps)
    predict_seconds = time.perf_counter() - start
    path = out_dir / ("submission" + task.submission_suffix)
    with _timed(timings, "write_submission"):
        path.write_bytes(task.write_submission(test_inputs, predictions))
    tracked.log_file(path, "submission")
    return path, predict_seconds


def predictions_of(task: AnyTask, entry: ModuleType, model: Any, inputs: Any,
                 config: dict[str, Any], maps: Maps | None) -> Any:
    """The entry's predictions, from the maps just computed where it can (the maps are not
    computed twice): where the task's maps are its predictions (coordinates), or where the
    entry defines `predictions_from_maps(task, model, maps, config)`."""
    if maps is not None and task.maps_are_predictions:
        return maps
    from_maps = getattr(entry, "predictions_from_maps", None)
    if maps is not None and callable(from_maps):
        return from_maps(task, model, maps, config)
    return entry.predict(task, model, inputs, config)


def _speeds(model: Any) -> dict[str, float]:
    """The throughput figures an entry's model reports under names of its own (e.g.
    {"seconds_per_specimen": 41.2}): its `speeds` mapping, a key of a dict model or an
    attribute. Numbers only; none when it reports none."""
    found = model.get("speeds") if isinstance(model, dict) else getattr(model, "speeds", None)
    if not isinstance(found, dict):
        return {}
    return {str(k): float(v) for k, v in found.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


@contextlib.contextmanager
def _timed(timings: dict[str, Any], stage: str) -> Iterator[None]:
    """Adds the block's wall seconds to `timings[stage]` (stages may recur: pictures)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def _rounded(timings: dict[str, Any]) -> dict[str, Any]:
    return {k: [{f: round(v, 3) if isinstance(v, float) else v for f, v in row.items()}
                for row in val] if isinstance(val, list) else round(val, 3)
            for k, val in timings.items()}


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if not isinstance(v, dict)}


def _save_model(entry: ModuleType, model: Any, folder: Path) -> None:
    """The entry's own `save(model, folder)` where it defines one (the folder is then what
    its `load(task, folder, config)` reads: a code submission carries it as `model/`);
    otherwise Keras models as `.keras` files and anything else (learned numbers) as JSON."""
    folder.mkdir(exist_ok=True)
    save = getattr(entry, "save", None)
    if callable(save):
        save(model, folder)
        return
    keras_model = getattr(model, "model", None)
    if keras_model is not None and hasattr(keras_model, "save"):
        keras_model.save(folder / "model.keras")
    else:
        (folder / "model.json").write_text(json.dumps(jsonable(model, max_items=64),
                                                      indent=1) + "\n")


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
