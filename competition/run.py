"""`competition run DIR submissions/ENTRY`: train an entry, predict, write, submit.

An entry folder holds `entry.py` with `fit(task, train, config, on_epoch=None)` and
`predict(task, model, inputs, config)`, and `config.yaml` (top-level keys shared, a section
per task on top). `--config FILE` (same structure) and `--set key=value` override it.
Everything a run produced lands in `DIR/runs/<entry>-<time>/`: the submission, and
`run.json` (configuration, timings, training history, score).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import platform
import time
from pathlib import Path
from typing import Any

import yaml

from competition import datasets, snapshots, tracking
from competition.errors import CompetitionError
from competition.formats import maps as maps_format
from competition.prepared import PreparedCompetition

TASK_SECTIONS = ("nuclei", "em", "landmarks")


def load_entry(folder: Path):
    path = Path(folder) / "entry.py"
    if not path.is_file():
        raise CompetitionError(f"{folder}: no entry.py (an entry defines fit and predict)")
    spec = importlib.util.spec_from_file_location(f"entry_{Path(folder).name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("fit", "predict"):
        if not callable(getattr(module, name, None)):
            raise CompetitionError(f"{path}: no function {name}()")
    return module


def _read_yaml(path: Path) -> dict:
    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise CompetitionError(f"{path}: unreadable configuration ({e})") from None
    if not isinstance(doc, dict):
        raise CompetitionError(f"{path}: the configuration must be a mapping")
    return doc


def _flatten(doc: dict, task: str) -> dict:
    """Shared keys, then the task's own section on top."""
    out = {k: v for k, v in doc.items() if k not in TASK_SECTIONS}
    section = doc.get(task) or {}
    if not isinstance(section, dict):
        raise CompetitionError(f"configuration key {task!r} names the {task} task's section "
                               "and must be a mapping (rename the setting)")
    out.update(section)
    return out


def resolve_config(folder: Path, task: str, config_file: Path | None,
                   overrides: list[str]) -> dict[str, Any]:
    config = _flatten(_read_yaml(Path(folder) / "config.yaml"), task) \
        if (Path(folder) / "config.yaml").is_file() else {}
    if config_file is not None:
        config.update(_flatten(_read_yaml(config_file), task))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CompetitionError(f"--set {item!r}: expected key=value")
        key = key.strip()
        if "." in key:  # "nuclei.epochs=3" applies to that task only
            section, key = key.split(".", 1)
            if section != task:
                continue
        config[key] = yaml.safe_load(value)
    return config


def run(comp_dir: Path, entry_dir: Path, config_file: Path | None = None,
        overrides: list[str] | None = None, inputs: Path | None = None,
        team: str | None = None, submit: bool = True,
        also_predict: Path | None = None) -> dict[str, Any]:
    """Train, predict, write and (for the competition's own test set) submit; with
    `also_predict`, the same model also predicts that folder (e.g. DSB's stage1_test).
    Logged as an MLflow training run (see competition.tracking)."""
    comp = PreparedCompetition.open(comp_dir)
    task = comp.task.name
    entry = load_entry(entry_dir)
    config = resolve_config(entry_dir, task, config_file, overrides or [])
    name = Path(entry_dir).resolve().name
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = comp.root / "runs" / f"{name}-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    train, validation = datasets.hold_out(datasets.load_train(comp), config.get("seed", 0))
    tags = {"kind": "training", "competition": comp.name, "task": task, "entry": name}
    with tracking.training_run(comp.name, f"{name}-{stamp}", tags) as tracked:
        tracked.log(params={**_flat(config), "entry": name, "competition": comp.name,
                            "task": task, "validation_item": validation.name
                            if validation else "none"})
        record = _train_predict_submit(comp, entry, config, name, out_dir, train, validation,
                                       tracked, inputs, team, submit, also_predict)
        tracked.log(metrics={k: record[k] for k in ("fit_seconds", "predict_seconds",
                                                   "images_per_second", "seconds_per_item",
                                                   "public_score", "val_score")
                             if isinstance(record.get(k), (int, float))},
                    tags={"submission_id": record.get("submission_id", "none"),
                          "mlflow.note.content": f"`competition run` of {name} on {comp.name}"})
        record["mlflow_run_id"] = tracked.run_id
        (out_dir / "run.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
        tracked.log_file(out_dir / "run.json")
    return record


def _train_predict_submit(comp, entry, config, name, out_dir, train, validation, tracked,
                          inputs, team, submit, also_predict) -> dict[str, Any]:
    task = comp.task.name
    has_maps = callable(getattr(entry, "probabilities", None))
    history: list[dict] = []
    frames: list = []

    def snapshot(model, caption: str) -> float | None:
        if validation is None or not has_maps:
            return None
        maps = entry.probabilities(task, model, validation.inputs, config)
        maps = next(iter(maps.values())) if task == "nuclei" else maps[0]
        frame, score = snapshots.validation_frame(task, maps, validation.image,
                                                  validation.truth, config)
        frames.append((frame, f"{caption}  val {score:.3f}"))
        return score

    def on_epoch(epoch: int, logs: dict, model=None) -> None:
        row = {"epoch": epoch + 1, **logs}
        if model is not None:
            row["val_score"] = snapshot(model, f"epoch {epoch + 1}")
        history.append(row)
        tracked.log_epoch(epoch + 1, {k: v for k, v in row.items()
                                      if k != "epoch" and v is not None})

    start = time.perf_counter()
    model = entry.fit(task, train, config, on_epoch=on_epoch)
    fit_seconds = time.perf_counter() - start
    val_score = snapshot(model, "final")
    if frames:
        (out_dir / "validation.gif").write_bytes(snapshots.gif([f for f, _ in frames],
                                                                     [c for _, c in frames]))
        tracked.log_file(out_dir / "validation.gif", "validation")
    _save_model(model, out_dir / "model")
    tracked.log_file(out_dir / "model", "model")

    test_inputs = datasets.load_inputs(comp, inputs)
    start = time.perf_counter()
    maps = entry.probabilities(task, model, test_inputs, config) if has_maps else None
    if maps is not None and inputs is None:
        (out_dir / "predictions.npz").write_bytes(maps_format.to_npz(task, maps))
        tracked.log_file(out_dir / "predictions.npz", "predictions")
    # Landmark coordinates are both the maps and the prediction: not computed twice.
    predictions = maps if task == "landmarks" and maps is not None else \
        entry.predict(task, model, test_inputs, config)
    predict_seconds = time.perf_counter() - start
    path = out_dir / ("submission" + comp.task.submission_suffix)
    path.write_bytes(datasets.submission_bytes(task, test_inputs, predictions))
    tracked.log_file(path, "submission")
    extra_path = None
    if also_predict is not None:
        extra_inputs = datasets.load_inputs(comp, also_predict)
        extra_path = out_dir / (f"{Path(also_predict).name}_submission"
                                + comp.task.submission_suffix)
        extra_path.write_bytes(datasets.submission_bytes(
            task, extra_inputs, entry.predict(task, model, extra_inputs, config)))
        tracked.log_file(extra_path, "submission")
    record: dict[str, Any] = {
        "entry": name, "competition": comp.name, "task": task, "config": config,
        "fit_seconds": round(fit_seconds, 2), "predict_seconds": round(predict_seconds, 2),
        "images_per_second": getattr(model, "images_per_second", None),
        "seconds_per_item": model.get("seconds_per_specimen") if isinstance(model, dict)
        else None,
        "validation_item": validation.name if validation else None, "val_score": val_score,
        "report": _summary(getattr(model, "report", None)),
        "history": history, "submission": str(path), "inputs": str(inputs or "test"),
        "predictions": str(out_dir / "predictions.npz") if has_maps and inputs is None
        else None,
        "also_predicted": str(extra_path) if extra_path else None,
        "hardware": f"{platform.machine()}, {_cpu_count()} CPU cores",
    }
    if submit and inputs is None:
        from competition.submissions import SubmissionStore

        # Training libraries leave threads running: score in processes from a fork server.
        store = SubmissionStore(comp, start_method="forkserver")
        outcome = store.submit(path, team or f"baseline-{name}", f"competition run {name}")
        record["submission_id"] = outcome.id
        record["status"] = outcome.status
        record["public_score"] = outcome.public_score
        if outcome.error:
            record["error"] = outcome.error
    return record


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if not isinstance(v, dict)}


def _save_model(model: Any, folder: Path) -> None:
    """Keras models as `.keras` files; anything else (learned numbers) as JSON."""
    folder.mkdir(exist_ok=True)
    keras_model = getattr(model, "model", None)
    if keras_model is not None and hasattr(keras_model, "save"):
        keras_model.save(folder / "model.keras")
    else:
        (folder / "model.json").write_text(json.dumps(_summary(model), indent=1) + "\n")


def _summary(value: Any) -> Any:
    """JSON of learned numbers; arrays (e.g. template meshes) as their shapes."""
    if isinstance(value, dict):
        return {str(k): _summary(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_summary(v) for v in value]
    if hasattr(value, "shape") and getattr(value, "ndim", 0) > 0:
        return f"array{tuple(value.shape)}"
    if hasattr(value, "item"):
        return value.item()
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
