"""`competition cv-compare A B`: two cross-validations of one competition, paired item by item.

Two recipes are compared on the same items in the same folds (the same K, fold seed and
assignment; `plan.json` says so), so that the difference is the recipes' and not the
folds'. Each out-of-fold item's values (`fold-N/fold.json`) are paired; the comparison is the
harness's one (`comparison.paired`: a paired bootstrap of the score difference and a
Wilcoxon signed-rank p over the items' own scores; positive means A is better, whichever
way the metric runs), overall, per fold and per stratum (the task's `cv_items` stratum: an
image's appearance type, a patient's institution). Folds that only one side has finished
are left out and named: a stopped cross-validation (`competition cv --resume` takes it up)
can be compared on its finished folds.

Only the two folders are read: their records hold no hidden data.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from competition.entries import config_differences
from competition.errors import CompetitionError
from competition.tasks import get_task
from competition.tasks.base import AnyTask
from competition.tasks.comparison import paired
from competition.training.cv import RUN_ONLY

MIN_STRATUM_ITEMS = 5  # fewer items than this: a stratum gets no row, only its name


def _plan(folder: Path) -> dict[str, Any]:
    try:
        plan: dict[str, Any] = json.loads((folder / "plan.json").read_text())
    except (OSError, ValueError):
        raise CompetitionError(f"{folder}: no readable plan.json (not a `competition cv` "
                               "folder)") from None
    return plan


def _finished(folder: Path, assignment: dict[str, int]) -> dict[int, dict[str, Any]]:
    """The fold records a cross-validation has finished, by fold number, each holding the
    items its plan assigns to it, once (`fold.json` is written atomically, last: a fold
    without one is unfinished)."""
    out = {}
    for path in sorted(folder.glob("fold-*/fold.json")):
        found = re.fullmatch(r"fold-(\d+)", path.parent.name)
        if not found:
            continue  # not one of the folds cv writes (a copy, say)
        number = int(found.group(1))
        try:
            record = json.loads(path.read_text())
            keys = [row["key"] for row in record["item_values"]]
            fits = record.get("fold") == number and isinstance(record.get("score"), (int, float))
        except (OSError, ValueError, KeyError, TypeError):
            raise CompetitionError(f"{path}: not a fold record cv writes") from None
        planned = {k for k, n in assignment.items() if n == number}
        if not fits or len(keys) != len(set(keys)) or set(keys) != planned:
            raise CompetitionError(f"{path}: does not hold the items its plan assigns to fold "
                                   f"{number}, once each")
        out[number] = record
    return out


def _task_of(folders: tuple[Path, Path], plan: dict[str, Any]) -> AnyTask:
    """The task: a finished cross-validation's cv.json names it; otherwise the competition
    the folder sits in (its configuration only), if it is the plan's."""
    from competition.board.prepared import PreparedCompetition

    for folder in folders:
        try:
            return get_task(json.loads((folder / "cv.json").read_text())["task"])
        except (OSError, ValueError, KeyError):
            continue
    for folder in folders:
        try:
            comp = PreparedCompetition.open(folder.resolve().parents[1], public_only=True)
        except (CompetitionError, OSError, IndexError):
            continue
        if comp.name == plan.get("competition"):
            return comp.task
    raise CompetitionError(f"{folders[0]}, {folders[1]}: both unfinished (no cv.json) and "
                           "neither in its competition's cv/ folder: which task scores them "
                           "is unknown")


ABSENT = "(absent)"  # a key one configuration lacks (made before the entry had it)


def config_changes(a: dict[str, Any], b: dict[str, Any]) -> dict[str, list[Any]]:
    """Settings of one entry that differ between two configurations: key -> [A's, B's]
    (`ABSENT` where one lacks the key; settings that change neither model nor scores,
    `cv.RUN_ONLY`, left out)."""
    return {k: [a.get(k, ABSENT), b.get(k, ABSENT)]
            for k in config_differences(a, b, {}, RUN_ONLY)}


def _values(rows: dict[str, dict[str, Any]], keys: list[str], where: Path) -> list[Any]:
    values = [rows[k]["values"] for k in keys]
    bad = [k for k, v in zip(keys, values, strict=True)
           if not all(isinstance(x, (int, float)) and np.isfinite(x) for x in v)]
    if bad:
        raise CompetitionError(f"{where}: item {bad[0]} has no finite values "
                               f"({len(bad)} such items): it cannot be paired")
    return values


def compare(folder_a: Path, folder_b: Path) -> dict[str, Any]:
    """A against B over the items of the folds both finished (positive: A is better)."""
    folder_a, folder_b = Path(folder_a), Path(folder_b)
    plan_a, plan_b = _plan(folder_a), _plan(folder_b)
    differ = [k for k in ("competition", "k", "fold_seed", "groups", "assignment")
              if plan_a.get(k) != plan_b.get(k)]
    if differ:
        raise CompetitionError(f"{folder_a} and {folder_b} were not cross-validated on the same "
                               f"folds ({', '.join(differ)} differ): a paired comparison "
                               "needs the same items in the same folds (same --folds, "
                               "--seed and --groups on the same competition)")
    assignment = plan_a.get("assignment") or {}
    task = _task_of((folder_a, folder_b), plan_a)
    done_a, done_b = _finished(folder_a, assignment), _finished(folder_b, assignment)
    common = sorted(set(done_a) & set(done_b))
    if not common:
        raise CompetitionError(f"no fold is finished in both {folder_a} "
                               f"({_numbers(done_a)}) and {folder_b} ({_numbers(done_b)})")
    strata: list[str] = []
    values_a: list[Any] = []
    values_b: list[Any] = []
    per_fold = []
    with warnings.catch_warnings():  # scipy's note on small samples: n is reported
        warnings.simplefilter("ignore")
        for number in common:
            rows_a = {r["key"]: r for r in done_a[number]["item_values"]}
            rows_b = {r["key"]: r for r in done_b[number]["item_values"]}
            keys = sorted(rows_a)
            fold_a, fold_b = _values(rows_a, keys, folder_a), _values(rows_b, keys, folder_b)
            strata += [str(rows_a[k].get("stratum") or "") for k in keys]
            values_a += fold_a
            values_b += fold_b
            one = paired(task, np.array(fold_a, np.float64), np.array(fold_b, np.float64))
            per_fold.append({"fold": number, "a": done_a[number]["score"],
                             "b": done_b[number]["score"], **one.as_json()})
        a, b = np.array(values_a, np.float64), np.array(values_b, np.float64)
        overall = paired(task, a, b)
        named = sorted({s for s in strata if s})
        by_stratum, too_few = {}, []
        for stratum in named if len(named) > 1 else []:
            chosen = np.array([s == stratum for s in strata])
            if chosen.sum() >= MIN_STRATUM_ITEMS:
                by_stratum[stratum] = paired(task, a[chosen], b[chosen]).as_json()
            else:
                too_few.append(stratum)
    name_a, name_b = folder_a.resolve().name, folder_b.resolve().name
    same_entry = plan_a.get("entry") == plan_b.get("entry")
    return {
        "a": {"folder": str(folder_a), "name": name_a, "entry": plan_a.get("entry")},
        "b": {"folder": str(folder_b), "name": name_b, "entry": plan_b.get("entry")},
        "competition": plan_a.get("competition"), "task": task.name,
        "metric": task.metric_label, "higher_is_better": task.higher_is_better,
        "k": plan_a.get("k"), "folds_compared": common,
        "folds_left_out": sorted(set(range(1, int(plan_a.get("k") or 0) + 1)) - set(common)),
        # one entry's settings; two entries' keys are their own and not compared
        "config_changes": config_changes(plan_a.get("config") or {},
                                         plan_b.get("config") or {}) if same_entry else None,
        "items": len(a), "per_fold": per_fold, "per_stratum": by_stratum,
        "strata_too_small": too_few, **overall.as_json(),
        "sentence": overall.sentence(name_a, name_b),
    }


def _numbers(done: dict[int, Any]) -> str:
    return "folds " + ", ".join(map(str, sorted(done))) if done else "no fold finished"
