"""`competition cv DIR ENTRY`: K-fold cross-validation of an entry on the public training data.

The task plugin says how its training items group and stratify (`DataFiles.cv_items`:
patients by institution, specimens, images by appearance type) or that folds are blocks of
neighbouring slices (`cv_contiguous`, with a gap). For each fold the entry is fitted on the
other folds, predicts the held-out items from their inputs alone (`inputs_of`), the task
writes the submission file, and the official scorer scores it against the held-out labels
written in the hidden solution's own layout (`write_solution`). Out-of-fold predictions are
kept: each fold's submission, and the prediction maps of every training item (`oof_maps.npz`)
for entries that make maps, which is what choices (thresholds, ensembles) are made on.

A long cross-validation can be stopped and taken up again (`--resume DIR`): each finished
fold leaves `fold-N/fold.json` (and its maps), and `plan.json`, written first, holds what
the folds depend on (entry, configuration, K, seed, the assignment of items); a resumed run
refuses a folder whose plan differs and reruns only the folds without `fold.json`.

Only the competition's configuration and `public/` are read: this is the local validation a
participant has. Everything lands in `DIR/cv/<entry>-<time>/` (`cv.json`, the folds'
submissions and truths); MLflow gets a parent run with a child run per fold.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from competition.board.prepared import PreparedCompetition
from competition.entries import config_differences, load_entry, resolve_config
from competition.errors import CompetitionError
from competition.formats import maps as maps_format
from competition.formats.files import SubmissionFile
from competition.formats.jsonsafe import jsonable
from competition.outputs import exclusive, fresh_folder, write_atomic
from competition.progress import bar
from competition.tasks import shift
from competition.tasks.base import AnyTask, CvItem, Maps, ScoreResult
from competition.tasks.comparison import estimate
from competition.tracking import runs as tracking
from competition.training.run import flat_config, predictions_of

DEFAULT_FOLDS = 5
# Configuration keys that change neither a fold's model nor its scores: a resumed run may
# set them otherwise.
RUN_ONLY = frozenset({"verbose", "workers"})


@dataclass(frozen=True)
class Fold:
    """One fold: the positions (in `cv_items` order) trained on and held out."""

    number: int  # from 1
    train: list[int]
    held: list[int]


def make_folds(items: Sequence[CvItem], k: int, seed: int = 0, *, contiguous: bool = False,
               gap: int = 0, kind: str = "item") -> list[Fold]:
    """K folds of the items. Contiguous: K blocks of neighbouring items in order, training
    without the `gap` items either side of the held-out block. Otherwise: whole groups per
    fold, strata in proportion (scikit-learn's StratifiedGroupKFold, shuffled by `seed`)."""
    n = len(items)
    if k < 2:
        raise CompetitionError(f"--folds {k}: cross-validation needs at least 2 folds")
    if contiguous:
        if n < k:
            raise CompetitionError(f"--folds {k}: the training data has only {n} {kind}s")
        folds = []
        for number, block in enumerate(np.array_split(np.arange(n), k), start=1):
            first, last = int(block[0]), int(block[-1])
            train = [p for p in range(n) if p < first - gap or p > last + gap]
            if not train:
                raise CompetitionError(f"--folds {k}: fold {number} leaves nothing to train "
                                       f"on ({n} {kind}s, gap {gap})")
            folds.append(Fold(number, train, block.tolist()))
        return folds
    from sklearn.model_selection import StratifiedGroupKFold

    groups = [item.group for item in items]
    n_groups = len(set(groups))
    if n_groups < k:
        raise CompetitionError(f"--folds {k}: the training data has only {n_groups} groups "
                               f"({n} {kind}s); choose at most {n_groups} folds")
    strata = [item.stratum for item in items]
    if max(Counter(strata).values()) < k:
        strata = [""] * n  # no stratum fills K folds: whole groups alone
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # A stratum smaller than K cannot be in every fold; it is spread as far as it goes.
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        splits = list(splitter.split(np.zeros(n), strata, groups))
    if any(not len(held) for _, held in splits):
        # The stratified search can leave a fold empty (few groups of unequal sizes): deal
        # the shuffled groups out in turn instead, which fills every fold.
        order = np.random.default_rng(seed).permutation(sorted(set(groups)))
        fold_of = {g: k for k, g in enumerate(order.tolist())}
        held_sets = [[p for p in range(n) if fold_of[groups[p]] % k == f] for f in range(k)]
        return [Fold(f + 1, [p for p in range(n) if fold_of[groups[p]] % k != f], held)
                for f, held in enumerate(held_sets)]
    return [Fold(number, sorted(train.tolist()), sorted(held.tolist()))
            for number, (train, held) in enumerate(splits, start=1)]


@dataclass(frozen=True)
class _Setup:
    comp: PreparedCompetition
    task: AnyTask
    entry: ModuleType
    config: dict[str, Any]
    name: str
    out_dir: Path
    curves: bool  # score the held-out fold whenever the entry hands its model to on_epoch
    # The folder of test inputs the folds are weighed toward, and each training item's
    # weight (in `cv_items`' order)
    toward: tuple[str, shift.Shift] | None = None
    groups: str | None = None  # one of the task's `cv_groupings`, None for its own


def cross_validate(comp_dir: Path, entry_dir: Path, config_file: Path | None = None,
                   overrides: list[str] | None = None, *, folds: int = DEFAULT_FOLDS,
                   seed: int = 0, curves: bool = False, resume: Path | None = None,
                   toward: str | Path | None = None,
                   groups: str | None = None) -> dict[str, Any]:
    """Cross-validate the entry; returns what `cv.json` holds. `curves`: each fold's
    learning curve, its held-out items scored after the epochs the entry reports with its
    model (every epoch, or each `snapshot_every`-th). `resume`: an earlier, unfinished (or
    finished) cross-validation's folder of the same plan; its finished folds are kept.
    `toward`: a folder of test inputs (in the data set's layout; "test": the competition's
    public test inputs) that the out-of-fold scores are also weighed toward (`shift`).
    `groups`: one of the task's other groupings (`cv_groupings`) instead of its own."""
    comp = PreparedCompetition.open(comp_dir, public_only=True)
    task = comp.task
    config = resolve_config(entry_dir, task.name, config_file, overrides or [])
    entry = load_entry(entry_dir)
    name = Path(entry_dir).resolve().name
    _check_groups(task, groups)
    with bar("Loading the training data"):
        train = task.load_train(comp.public_dir)
        items = task.cv_items(train) if groups is None else task.cv_grouped(train, groups)
    plan = make_folds(items, folds, seed, contiguous=task.cv_contiguous, gap=task.cv_gap,
                      kind=task.item_kind)
    plan_record = {"entry": name, "competition": comp.name, "config": config, "k": folds,
                   "fold_seed": seed, "curves": curves, "groups": groups,
                   "assignment": {items[p].key: fold.number for fold in plan
                                  for p in fold.held}}
    plan_record = json.loads(json.dumps(jsonable(plan_record)))
    defaults = json.loads(json.dumps(jsonable(resolve_config(entry_dir, task.name))))
    if resume is not None:  # refused before the items are described
        # (a plan made before --groups existed has no key: the task's own grouping, None)
        _check_resumable(Path(resume), plan_record, defaults)
    weighed = None if toward is None else (str(toward), _weights(comp, task, train, items,
                                                                 str(toward)))
    out_dir = fresh_folder(comp.root / "cv", name) if resume is None else Path(resume)
    with exclusive(out_dir, "this cross-validation"):
        if resume is None:
            _write_json(out_dir / "plan.json", plan_record)
        else:
            _check_resumable(out_dir, plan_record, defaults)
        setup = _Setup(comp, task, entry, config, name, out_dir, curves, weighed, groups)
        return _folds(setup, train, items, plan, seed, resumed=resume is not None)


def _folds(setup: _Setup, train: Any, items: Sequence[CvItem], plan: list[Fold], seed: int,
           *, resumed: bool) -> dict[str, Any]:
    """Every fold (those a resumed run finished before kept), the summary, cv.json."""
    comp, task, name, out_dir = setup.comp, setup.task, setup.name, setup.out_dir
    folds = len(plan)
    tags = {"kind": "cv", "competition": comp.name, "task": task.name, "entry": name,
            "team": f"baseline-{name}"}
    if resumed:  # the folds finished before have their child runs under the first parent
        tags["resumed"] = out_dir.name
    with tracking.training_run(comp.key, f"cv {out_dir.name}", tags) as parent:
        parent.log(params={**flat_config(setup.config), "entry": name, "folds": folds,
                           "fold_seed": seed, "groups": setup.groups or "default"})
        results, oof = [], {}
        for fold in plan:
            done = _finished_fold(setup, fold)
            if done is not None:
                record, maps = done
            else:
                child_tags = {**tags, "fold": fold.number}
                if parent.run_id:
                    child_tags["mlflow.parentRunId"] = parent.run_id
                with tracking.training_run(comp.key, f"cv {name} fold {fold.number}",
                                           child_tags) as child:
                    record, maps = _one_fold(setup, train, items, fold, child)
            results.append(record)
            oof.update(maps or {})
        record = _summary(setup, items, plan, results, seed)
        if setup.toward is not None:
            record["toward"] = _toward(setup, items, results)
        if oof:
            path = out_dir / "oof_maps.npz"
            write_atomic(path, maps_format.to_npz(oof, task.map_dtype))
            record["oof_maps"] = str(path)
            parent.log_file(path, "predictions")
        pooled = record["pooled"]
        parent.log(metrics={"cv_mean": record["mean"], "cv_std": record["std"],
                            "cv_pooled": pooled["score"], "cv_low": pooled["low"],
                            "cv_high": pooled["high"]},
                   tags={"mlflow.note.content": f"`competition cv` of {name} on {comp.name}: "
                         f"{folds} folds"})
        record["mlflow_run_id"] = parent.run_id
        _write_json(out_dir / "cv.json", jsonable(record, max_items=100_000))
        for fold in plan:  # kept once, in the whole set, now that cv.json says where
            (out_dir / f"fold-{fold.number}" / "oof_maps.npz").unlink(missing_ok=True)
        parent.log_file(out_dir / "cv.json")
    return record


def _check_groups(task: AnyTask, groups: str | None) -> None:
    if groups is not None and groups not in task.cv_groupings:
        known = "; ".join(f"{k}: {v}" for k, v in task.cv_groupings.items()) or "none"
        raise CompetitionError(f"--groups {groups}: the {task.name} task has no such grouping "
                               f"(it has: {known})")


def _weights(comp: PreparedCompetition, task: AnyTask, train: Any, items: Sequence[CvItem],
             toward: str) -> shift.Shift:
    """Each training item's importance toward the test inputs in `toward` (adversarial
    validation, `competition.tasks.shift`), found before any fold is trained: a task that
    cannot describe its items is refused at once."""
    folder = None if toward == "test" else Path(toward)
    with bar("Describing the training and test items"):
        described = task.item_features(train)
        test = task.item_features(task.load_inputs(comp.public_dir, folder))
    if len(described) != len(items):
        raise CompetitionError(f"the {task.name} task describes {len(described)} items of "
                               f"{len(items)} (--toward needs one row per item)")
    try:
        return shift.adversarial_weights(described, test)
    except ValueError as e:
        raise CompetitionError(f"--toward {toward}: {e}") from None


def _toward(setup: _Setup, items: Sequence[CvItem],
            results: list[dict[str, Any]]) -> dict[str, Any]:
    """The out-of-fold scores weighed toward the test inputs: what the folds say of items
    drawn like those."""
    assert setup.toward is not None
    folder, found = setup.toward
    rows = [row for r in results for row in r["item_values"]]
    values = np.array([row["values"] for row in rows], np.float64)
    try:
        weights = found.weights_of([item.key for item in items], [row["key"] for row in rows])
    except ValueError as e:
        raise CompetitionError(f"--toward {folder}: {e}") from None
    return {"folder": folder, **found.as_json(),
            **shift.weighted_estimate(setup.task, values, weights).as_json()}


def _write_json(path: Path, value: Any) -> None:
    write_atomic(path, (json.dumps(value, indent=1) + "\n").encode())


def _check_resumable(folder: Path, plan_record: dict[str, Any],
                     defaults: dict[str, Any]) -> None:
    """The folder of the cross-validation to take up again was made with the same plan
    (nothing else makes its finished folds comparable; keys that change neither the model
    nor the scores, `RUN_ONLY`, may differ; a key the entry gained since counts as its
    default)."""
    path = folder / "plan.json"
    if not path.is_file():
        raise CompetitionError(f"--resume {folder}: no plan.json there (not a cross-"
                               "validation folder, or one made before --resume existed)")
    if (folder / "cv.json").exists():
        raise CompetitionError(f"--resume {folder}: this cross-validation is finished "
                               "(its cv.json is there)")
    before = json.loads(path.read_text())
    differ = sorted(k for k in plan_record if k != "config" and before.get(k) != plan_record[k])
    if "groups" in differ:  # the one a user most easily forgets to pass again
        made = before.get("groups")
        differ[differ.index("groups")] = f"groups ({f'--groups {made}' if made else 'none'})"
    old, new = before.get("config", {}), plan_record["config"]
    differ += [f"config ({k})" for k in config_differences(old, new, defaults, RUN_ONLY)]
    if differ:
        raise CompetitionError(f"--resume {folder}: made with another "
                               f"{', '.join(differ)}; start a new cross-validation instead")


def _finished_fold(setup: _Setup, fold: Fold) -> tuple[dict[str, Any], Maps | None] | None:
    """A fold a resumed cross-validation already finished (its record and maps), or None
    after clearing what an interrupted attempt left."""
    folder = setup.out_dir / f"fold-{fold.number}"
    maps_path = folder / "oof_maps.npz"
    makes_maps = callable(getattr(setup.entry, "probabilities", None))
    try:
        record = json.loads((folder / "fold.json").read_text())
        maps = maps_format.from_npz(maps_path.read_bytes()) if makes_maps else None
        return record, maps
    except (OSError, ValueError, CompetitionError):  # unfinished, or its maps are gone
        pass
    if folder.exists():
        shutil.rmtree(folder)
    return None


def _one_fold(setup: _Setup, train: Any, items: Sequence[CvItem], fold: Fold,
              tracked: tracking.TrainingRun) -> tuple[dict[str, Any], Maps | None]:
    """Fit on the fold's training items, predict its held-out inputs, score the file; the
    record (and maps) saved in the fold's folder, `fold.json` last, as the mark of a
    finished fold."""
    task, entry, config = setup.task, setup.entry, setup.config
    folder = setup.out_dir / f"fold-{fold.number}"
    folder.mkdir()
    fit_part = task.take(train, fold.train)
    held = task.take(train, fold.held)
    inputs = task.inputs_of(held)
    tracked.log(params={"fold": fold.number, "train_items": len(fold.train),
                        "held_out_items": len(fold.held)})

    solution = task.load_solution(task.write_solution(held, folder / "truth"))
    has_maps = callable(getattr(entry, "probabilities", None))
    curve: list[dict[str, Any]] = []

    def on_epoch(epoch: int, logs: dict[str, Any], model: Any = None) -> None:
        metrics = {k: v for k, v in logs.items() if isinstance(v, (int, float))}
        if setup.curves and model is not None:
            # The learning curve: the held-out fold scored officially after this epoch.
            maps = entry.probabilities(task, model, inputs, config) if has_maps else None
            scored = _score(setup, inputs, solution,
                            predictions_of(task, entry, model, inputs, config, maps),
                            folder / f"epoch{task.submission_suffix}")
            metrics["held_out_score"] = scored.score
            curve.append({"epoch": epoch + 1, **metrics})
        tracked.log_epoch(epoch + 1, metrics)

    start = time.perf_counter()
    with bar(f"Fold {fold.number}: training {setup.name} on {len(fold.train)} "
             f"{task.item_kind}s"):
        model = entry.fit(task, fit_part, config, on_epoch=on_epoch)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    with bar(f"Fold {fold.number}: predicting {len(fold.held)} {task.item_kind}s"):
        maps = entry.probabilities(task, model, inputs, config) if has_maps else None
        predictions = predictions_of(task, entry, model, inputs, config, maps)
    predict_seconds = time.perf_counter() - start
    path = folder / ("submission" + task.submission_suffix)
    result = _score(setup, inputs, solution, predictions, path)
    renamed = _training_keys(task, inputs, [items[p].key for p in fold.held])
    fields = tracking.numeric_fields(result.fields)
    record: dict[str, Any] = {
        "fold": fold.number, "train_items": len(fold.train), "items": len(fold.held),
        "groups": len({items[p].group for p in fold.held}), "score": result.score,
        "fields": fields, "fit_seconds": round(fit_seconds, 2),
        "predict_seconds": round(predict_seconds, 2), "submission": str(path),
        "item_values": _item_values(task, result, renamed, {items[p].key: items[p]
                                                             for p in fold.held}),
        "curve": curve,
    }
    tracked.log(metrics={"score": result.score, "fit_seconds": fit_seconds,
                         "predict_seconds": predict_seconds, **fields})
    tracked.log_file(path, "submission")
    kept = None if maps is None else {renamed.get(k, k): m for k, m in maps.items()}
    if kept is not None:
        write_atomic(folder / "oof_maps.npz", maps_format.to_npz(kept, task.map_dtype))
    # As a resumed run reads it back (plain JSON: an infinite value becomes null), so
    # that a fresh and a resumed run summarise the same numbers.
    record = json.loads(json.dumps(jsonable(record, max_items=100_000)))
    _write_json(folder / "fold.json", record)
    return record, kept


def _score(setup: _Setup, inputs: Any, solution: Any, predictions: Any,
           path: Path) -> ScoreResult:
    """Predictions written as the task's submission file at `path`, scored officially."""
    path.write_bytes(setup.task.write_submission(inputs, predictions))
    with SubmissionFile(path, setup.comp.limits, str(path)) as submission:
        return setup.task.score(submission, solution)


def _training_keys(task: AnyTask, inputs: Any, keys: list[str]) -> dict[str, str]:
    """Held-out items' own ids -> their ids in the training data. A block of slices is a
    stack of its own, numbered from 0 (its maps by `ids`, its scored rows by number);
    groups of images, specimens or patients keep their names."""
    if not task.cv_contiguous:
        return {}
    renamed = {str(z): key for z, key in enumerate(keys)}
    renamed.update(zip((str(i) for i in inputs.ids), keys, strict=True))
    return renamed


def _item_values(task: AnyTask, result: ScoreResult, renamed: dict[str, str],
                 held: dict[str, CvItem]) -> list[dict[str, Any]]:
    """Each held-out item's training id, group and stratum (e.g. an image's type) and the
    values its score aggregates (the paired comparison's input)."""
    out = []
    for row in result.items:
        key = str(result.item_id(row))
        key = renamed.get(key, key)
        item = held.get(key)
        out.append({"key": key, "group": item.group if item else None,
                    "stratum": item.stratum if item else None,
                    "values": task.item_values(row)})
    return out


def _summary(setup: _Setup, items: Sequence[CvItem], plan: list[Fold],
             results: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    task = setup.task
    scores = np.array([r["score"] for r in results], np.float64)
    values = np.array([row["values"] for r in results for row in r["item_values"]],
                      np.float64)
    return {
        "entry": setup.name, "competition": setup.comp.name, "task": task.name,
        "metric": task.metric_label, "higher_is_better": task.higher_is_better,
        "k": len(plan), "fold_seed": seed, "groups": setup.groups, "config": setup.config,
        "folds": results, "mean": float(scores.mean()),
        "std": float(scores.std(ddof=1)) if len(scores) > 1 else 0.0,
        "pooled": estimate(task, values).as_json(),
        "assignment": {items[p].key: fold.number for fold in plan for p in fold.held},
        "out_dir": str(setup.out_dir), "oof_maps": None,
    }
