"""`competition cv-compare A B`: two cross-validations of one competition, paired item by item.

Two recipes are compared on the same items in the same folds (the same K, fold seed and
assignment; `plan.json` says so), so that the difference is the recipes' and not the
folds'. Each out-of-fold item's values (`fold-N/fold.json`) are paired; the comparison is the
harness's one (`comparison.paired`: a paired bootstrap of the score difference and a
Wilcoxon signed-rank p over the items' own scores), overall, per fold and per stratum (the
task's `cv_items` stratum: an image's appearance type, a patient's institution). Folds that
only one side has finished are left out and named: a stopped cross-validation
(`competition cv --resume` takes it up) can be compared on its finished folds.

Only the two folders are read: their records hold no hidden data.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from competition.errors import CompetitionError
from competition.tasks import get_task
from competition.tasks.base import AnyTask
from competition.tasks.comparison import paired

MIN_STRATUM_ITEMS = 5  # fewer items than this: a stratum's row is left out (no test)


def _plan(folder: Path) -> dict[str, Any]:
    try:
        plan: dict[str, Any] = json.loads((folder / "plan.json").read_text())
    except (OSError, ValueError):
        raise CompetitionError(f"{folder}: no readable plan.json (not a `competition cv` "
                               "folder)") from None
    return plan


def _finished(folder: Path) -> dict[int, dict[str, Any]]:
    """The fold records a cross-validation has finished, by fold number."""
    out = {}
    for path in sorted(folder.glob("fold-*/fold.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a fold being written: not finished
        out[int(record["fold"])] = record
    return out


def _task_of(folder: Path, plan: dict[str, Any]) -> AnyTask:
    """The task: cv.json names it; an unfinished cross-validation's competition does."""
    try:
        return get_task(json.loads((folder / "cv.json").read_text())["task"])
    except (OSError, ValueError, KeyError):
        pass
    from competition.board.prepared import PreparedCompetition

    try:
        return PreparedCompetition.open(folder.resolve().parents[1], public_only=True).task
    except (CompetitionError, OSError, IndexError):
        raise CompetitionError(f"{folder}: unfinished (no cv.json) and not in a prepared "
                               "competition's cv/ folder: which task scores it is "
                               "unknown") from None


def config_changes(a: dict[str, Any], b: dict[str, Any]) -> dict[str, list[Any]]:
    """Settings that differ between two configurations: key -> [A's, B's] (None: unset)."""
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def compare(folder_a: Path, folder_b: Path) -> dict[str, Any]:
    """A against B over the items of the folds both finished (positive: A is better)."""
    folder_a, folder_b = Path(folder_a), Path(folder_b)
    plan_a, plan_b = _plan(folder_a), _plan(folder_b)
    differ = [k for k in ("competition", "k", "fold_seed", "assignment")
              if plan_a.get(k) != plan_b.get(k)]
    if differ:
        raise CompetitionError(f"{folder_a} and {folder_b} were not cross-validated on the same "
                               f"folds ({', '.join(differ)} differ): a paired comparison "
                               "needs the same items in the same folds (same --folds and "
                               "--seed on the same competition)")
    task = _task_of(folder_a, plan_a)
    done_a, done_b = _finished(folder_a), _finished(folder_b)
    common = sorted(set(done_a) & set(done_b))
    if not common:
        raise CompetitionError(f"no fold is finished in both {folder_a} "
                               f"({_numbers(done_a)}) and {folder_b} ({_numbers(done_b)})")
    keys: list[str] = []
    strata: list[str | None] = []
    values_a, values_b = [], []
    per_fold = []
    for number in common:
        rows_a = {r["key"]: r for r in done_a[number]["item_values"]}
        rows_b = {r["key"]: r for r in done_b[number]["item_values"]}
        if set(rows_a) != set(rows_b):
            raise CompetitionError(f"fold {number} holds other items in {folder_a} than in "
                                   f"{folder_b}")
        fold_keys = sorted(rows_a)
        keys += fold_keys
        strata += [rows_a[k].get("stratum") for k in fold_keys]
        values_a += [rows_a[k]["values"] for k in fold_keys]
        values_b += [rows_b[k]["values"] for k in fold_keys]
        per_fold.append({"fold": number, "items": len(fold_keys),
                         "a": done_a[number]["score"], "b": done_b[number]["score"]})
    a, b = np.array(values_a, np.float64), np.array(values_b, np.float64)
    with warnings.catch_warnings():  # scipy's note on small samples: n is reported
        warnings.simplefilter("ignore")
        overall = paired(task, a, b)
        by_stratum = {}
        for stratum in sorted({s for s in strata if s is not None}):
            chosen = np.array([s == stratum for s in strata])
            if chosen.sum() >= MIN_STRATUM_ITEMS:
                by_stratum[stratum] = paired(task, a[chosen], b[chosen]).as_json()
    name_a, name_b = folder_a.resolve().name, folder_b.resolve().name
    return {
        "a": {"folder": str(folder_a), "name": name_a, "entry": plan_a.get("entry")},
        "b": {"folder": str(folder_b), "name": name_b, "entry": plan_b.get("entry")},
        "competition": plan_a.get("competition"), "task": task.name,
        "metric": task.metric_label, "higher_is_better": task.higher_is_better,
        "k": plan_a.get("k"), "folds_compared": common,
        "folds_left_out": sorted((set(done_a) | set(done_b)
                                  | set(range(1, int(plan_a.get("k") or 0) + 1))) - set(common)),
        "config_changes": config_changes(plan_a.get("config") or {},
                                         plan_b.get("config") or {}),
        "items": len(keys), "per_fold": per_fold, "per_stratum": by_stratum,
        **overall.as_json(), "sentence": overall.sentence(name_a, name_b),
    }


def _numbers(done: dict[int, Any]) -> str:
    return "folds " + ", ".join(map(str, sorted(done))) if done else "no fold finished"
