"""`competition run DIR submissions/ENTRY`: train an entry, predict, write, submit.

The entry (see `competition.training.entries`) trains on the competition's public training
data less one held-out validation item (the task chooses it), predicts the test inputs, and
the task writes the submission file. Everything a run produced lands in
`DIR/runs/<entry>-<time>/`: the submission, the model, the validation pictures, the test maps,
and `run.json` (configuration, timings, training history, score). It is logged as an MLflow
training run (see competition.tracking).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from competition.board.prepared import PreparedCompetition
from competition.formats import maps as maps_format
from competition.formats.jsonsafe import jsonable
from competition.formats.pictures import gif
from competition.progress import bar
from competition.tasks.base import Maps, Task, Validation
from competition.tracking import runs as tracking
from competition.training.entries import load_entry, resolve_config


def run(comp_dir: Path, entry_dir: Path, config_file: Path | None = None,
        overrides: list[str] | None = None, inputs: Path | None = None,
        team: str | None = None, submit: bool = True,
        also_predict: Path | None = None, baseline: bool = True) -> dict[str, Any]:
    """Train, predict, write and (for the competition's own test set) submit, as an
    organizers' baseline unless `baseline` is False; with `also_predict`, the same model also
    predicts that folder (e.g. DSB's stage1_test)."""
    comp = PreparedCompetition.open(comp_dir)
    task = comp.task
    config = resolve_config(entry_dir, task.name, config_file, overrides or [])
    entry = load_entry(entry_dir)
    name = Path(entry_dir).resolve().name
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = comp.root / "runs" / f"{name}-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    with bar("Loading the training data"):
        train, validation = task.hold_out(task.load_train(comp.public_dir),
                                          config.get("seed", 0))
    tags = {"kind": "training", "competition": comp.name, "task": task.name, "entry": name}
    with tracking.training_run(comp.name, f"{name}-{stamp}", tags) as tracked:
        tracked.log(params={**_flat(config), "entry": name, "competition": comp.name,
                            "task": task.name, "validation_item": validation.name
                            if validation else "none"})
        record = _train_predict_submit(comp, entry, config, name, out_dir, train, validation,
                                       tracked, inputs, team, submit, also_predict, baseline)
        tracked.log(metrics={k: record[k] for k in ("fit_seconds", "predict_seconds",
                                                   "images_per_second", "seconds_per_item",
                                                   "public_score", "val_score")
                             if isinstance(record.get(k), (int, float))},
                    tags={"submission_id": record.get("submission_id", "none"),
                          "mlflow.note.content": f"`competition run` of {name} on {comp.name}"})
        record["mlflow_run_id"] = tracked.run_id
        (out_dir / "run.json").write_text(json.dumps(jsonable(record, max_items=64),
                                                     indent=1) + "\n")
        tracked.log_file(out_dir / "run.json")
    return record


def _train_predict_submit(comp: PreparedCompetition, entry: ModuleType, config: dict[str, Any],
                          name: str, out_dir: Path, train: Any, validation: Validation | None,
                          tracked: tracking.TrainingRun, inputs: Path | None, team: str | None,
                          submit: bool, also_predict: Path | None,
                          baseline: bool) -> dict[str, Any]:
    task = comp.task
    has_maps = callable(getattr(entry, "probabilities", None))
    history: list[dict[str, Any]] = []
    frames: list[tuple[Any, str]] = []

    def snapshot(model: Any, caption: str) -> float | None:
        if validation is None or not has_maps:
            return None
        maps = entry.probabilities(task, model, validation.inputs, config)
        frame, score = task.snapshot(maps, validation, config)
        frames.append((frame, f"{caption}  val {score:.3f}"))
        return score

    epochs = config.get("epochs") if isinstance(config.get("epochs"), int) else None
    with bar(f"Training {name}" + (" (epochs)" if epochs else ""), epochs) as shown:
        def on_epoch(epoch: int, logs: dict[str, Any], model: Any = None) -> None:
            row = {"epoch": epoch + 1, **logs}
            if model is not None:
                row["val_score"] = snapshot(model, f"epoch {epoch + 1}")
            history.append(row)
            tracked.log_epoch(epoch + 1, {k: v for k, v in row.items()
                                          if k != "epoch" and v is not None})
            loss = logs.get("loss")
            shown.advance(note=f"loss {loss:.4f}" if isinstance(loss, float) else None)

        start = time.perf_counter()
        model = entry.fit(task, train, config, on_epoch=on_epoch)
        fit_seconds = time.perf_counter() - start
    val_score = snapshot(model, "final")
    if frames:
        (out_dir / "validation.gif").write_bytes(gif([f for f, _ in frames],
                                                     [c for _, c in frames]))
        tracked.log_file(out_dir / "validation.gif", "validation")
    _save_model(model, out_dir / "model")
    tracked.log_file(out_dir / "model", "model")

    test_inputs = task.load_inputs(comp.public_dir, inputs)
    start = time.perf_counter()
    with bar("Predicting the test inputs"):
        maps = entry.probabilities(task, model, test_inputs, config) if has_maps else None
        if maps is not None and inputs is None:
            (out_dir / "predictions.npz").write_bytes(maps_format.to_npz(maps, task.map_dtype))
            tracked.log_file(out_dir / "predictions.npz", "predictions")
        predictions = _predictions(task, entry, model, test_inputs, config, maps)
    predict_seconds = time.perf_counter() - start
    path = out_dir / ("submission" + task.submission_suffix)
    path.write_bytes(task.write_submission(test_inputs, predictions))
    tracked.log_file(path, "submission")
    extra_path = None
    if also_predict is not None:
        extra_inputs = task.load_inputs(comp.public_dir, also_predict)
        extra_path = out_dir / (f"{Path(also_predict).name}_submission"
                                + task.submission_suffix)
        extra_path.write_bytes(task.write_submission(
            extra_inputs, entry.predict(task, model, extra_inputs, config)))
        tracked.log_file(extra_path, "submission")
    record: dict[str, Any] = {
        "entry": name, "competition": comp.name, "task": task.name, "config": config,
        "fit_seconds": round(fit_seconds, 2), "predict_seconds": round(predict_seconds, 2),
        "images_per_second": getattr(model, "images_per_second", None),
        "seconds_per_item": model.get("seconds_per_specimen") if isinstance(model, dict)
        else None,
        "validation_item": validation.name if validation else None, "val_score": val_score,
        "report": getattr(model, "report", None),
        "history": history, "submission": str(path), "inputs": str(inputs or "test"),
        "predictions": str(out_dir / "predictions.npz") if has_maps and inputs is None
        else None,
        "also_predicted": str(extra_path) if extra_path else None,
        "hardware": f"{platform.machine()}, {_cpu_count()} CPU cores",
    }
    if submit and inputs is None:
        from competition.board.board import Board
        from competition.board.scorer_process import ChildScorer

        # Training libraries leave threads running: score in processes from a fork server.
        board = Board(comp, scorer=ChildScorer("forkserver"))
        with bar("Scoring the submission"):
            outcome = board.submissions.submit(path, team or f"baseline-{name}",
                                               f"competition run {name}", baseline=baseline)
        record["submission_id"] = outcome.id
        record["status"] = outcome.status
        record["public_score"] = outcome.public_score
        if outcome.error:
            record["error"] = outcome.error
    return record


def _predictions(task: Task, entry: ModuleType, model: Any, inputs: Any,
                 config: dict[str, Any], maps: Maps | None) -> Any:
    """The entry's predictions; where the task's maps are its predictions (coordinates),
    the maps just computed, not computed twice."""
    if maps is not None and task.maps_are_predictions:
        return maps
    return entry.predict(task, model, inputs, config)


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if not isinstance(v, dict)}


def _save_model(model: Any, folder: Path) -> None:
    """Keras models as `.keras` files; anything else (learned numbers) as JSON."""
    folder.mkdir(exist_ok=True)
    keras_model = getattr(model, "model", None)
    if keras_model is not None and hasattr(keras_model, "save"):
        keras_model.save(folder / "model.keras")
    else:
        (folder / "model.json").write_text(json.dumps(jsonable(model, max_items=64),
                                                      indent=1) + "\n")


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
