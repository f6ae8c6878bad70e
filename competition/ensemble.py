"""Ensembles of runs: combine members' probability maps, post-process, submit, log.

Members are MLflow training runs that logged their test predictions (`competition run` does),
named by run id or by the id of the submission they made. `mean` and `median` combine maps
pixel-wise (coordinates point-wise); `greedy` is forward selection with replacement (Caruana
et al., 2004) that chooses members by the public split's score only: the private split is
never scored here.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from competition import datasets, tracking
from competition.errors import CompetitionError
from competition.formats import maps as maps_format
from competition.postprocess import predictions_from_maps
from competition.prepared import PreparedCompetition

METHODS = ("mean", "median", "greedy")
POSTPROCESS_KEYS = ("fg_threshold", "marker_threshold", "min_size")


@dataclass
class Member:
    ref: str  # as given
    run_id: str
    name: str
    public_score: float | None
    params: dict[str, str]
    maps: Any


# --- combining (pure) ------------------------------------------------------------------------

def _check_compatible(members: list[Any], names: list[str]) -> None:
    """Same items with the same image sizes (channel counts may differ)."""
    first = members[0]
    for maps, name in zip(members[1:], names[1:], strict=True):
        if isinstance(first, dict) != isinstance(maps, dict) or \
                (isinstance(first, dict) and sorted(first) != sorted(maps)):
            raise CompetitionError(f"member {name} predicted other items than {names[0]}")
        # Per item (H, W) or (landmarks, 3); a stack whole. Channels may differ.
        pairs, dims = ([(k, first[k], maps[k]) for k in first], 2) \
            if isinstance(first, dict) else ([("volume", first, maps)], 3)
        for key, a, b in pairs:
            if a.shape[:dims] != b.shape[:dims]:
                raise CompetitionError(f"member {name}: {key} has shape {b.shape}, member "
                                       f"{names[0]} has {a.shape}")


def combine(members: list[Any], method: str = "mean",
            weights: list[float] | None = None) -> Any:
    """Pixel-wise (or point-wise) mean, weighted mean or median of members' maps: a stack
    array, or dicts of arrays by item (channels cut to the fewest any member has)."""
    if method not in ("mean", "median"):
        raise CompetitionError(f"unknown combination {method!r}")
    if weights is not None:
        if method == "median":
            raise CompetitionError("--weights apply to the mean, not the median")
        if len(weights) != len(members):
            raise CompetitionError(f"{len(weights)} weights for {len(members)} members")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise CompetitionError("weights must be non-negative and not all zero")
    w = np.asarray(weights if weights is not None else [1.0] * len(members), np.float64)
    w = w / w.sum()

    def one(arrays: list[np.ndarray]) -> np.ndarray:
        if arrays[0].ndim == 3 and isinstance(members[0], dict):
            channels = min(a.shape[-1] for a in arrays)
            arrays = [a[..., :channels] for a in arrays]
        stack = np.stack([a.astype(np.float64) for a in arrays])
        if method == "median":
            return np.median(stack, axis=0).astype(arrays[0].dtype)
        return np.tensordot(w, stack, axes=1).astype(arrays[0].dtype)

    if isinstance(members[0], dict):
        return {k: one([m[k] for m in members]) for k in members[0]}
    return one(members)


def greedy_selection(n_members: int, public_score, rounds: int,
                     higher_is_better: bool) -> tuple[list[int], list[float]]:
    """Forward selection with replacement: each round adds the member whose addition scores
    best (by `public_score(bag)`); stops after `rounds` or when no addition improves. Returns
    the chosen bag (member indices, repeats allowed) and the score after each round."""
    bag: list[int] = []
    trajectory: list[float] = []
    best = None
    for _ in range(rounds):
        scored = [(public_score(bag + [k]), k) for k in range(n_members)]
        value, k = (max if higher_is_better else min)(scored, key=lambda t: t[0])
        if best is not None and not (value > best if higher_is_better else value < best):
            break
        bag.append(k)
        trajectory.append(value)
        best = value
    return bag, trajectory


def bag_weights(bag: list[int], n_members: int) -> list[float]:
    counts = Counter(bag)
    return [counts.get(k, 0) / len(bag) for k in range(n_members)]


# --- members from MLflow (I/O) ---------------------------------------------------------------

RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def load_members(comp: PreparedCompetition, refs: list[str],
                 config: tracking.TrackingConfig) -> list[Member]:
    if not config.enabled:
        raise CompetitionError("ensembles read their members from MLflow, and tracking is off "
                               f"(${tracking.SWITCH_ENV})")
    tracker = tracking.Tracker(config, "participants")
    members = []
    for ref in refs:
        run = _find_run(tracker, comp, ref)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = tracker.download(run.info.run_id, tracking.PREDICTIONS_ARTIFACT,
                                        Path(tmp))
            except Exception:
                raise CompetitionError(
                    f"member {ref}: run {run.info.run_id} logged no test predictions "
                    f"({tracking.PREDICTIONS_ARTIFACT}); entries that define probabilities() "
                    "log them with `competition run`") from None
            maps = maps_format.from_npz(comp.task.name, path.read_bytes(), f"member {ref}")
        members.append(Member(ref, run.info.run_id, run.info.run_name or ref,
                              run.data.metrics.get("public_score"), dict(run.data.params),
                              maps))
    return members


def _find_run(tracker: tracking.Tracker, comp: PreparedCompetition, ref: str):
    ref = ref.strip()
    if RUN_ID.match(ref):
        try:
            run = tracker.client.get_run(ref)
        except Exception:
            raise CompetitionError(f"member {ref}: no MLflow run with that id at "
                                   f"{tracker.uri}") from None
        if run.data.tags.get("competition") != comp.name:
            raise CompetitionError(f"member {ref}: run of competition "
                                   f"{run.data.tags.get('competition')!r}, not {comp.name!r}")
        return run
    if ref.isdigit():
        runs = tracker.runs(comp.name, f"tags.submission_id = '{int(ref)}' and "
                                       "tags.kind != 'submission'")
        if not runs:
            raise CompetitionError(
                f"member {ref}: submission {ref} carries no predictions (no training or "
                f"ensemble run in MLflow made it; `competition run` logs them)")
        return runs[0]
    raise CompetitionError(f"member {ref!r}: give an MLflow run id (32 hex digits) or a "
                           "submission id")


# --- the command -----------------------------------------------------------------------------

def _public_only(task: str, maps, usage: dict) -> Any:
    """Maps with every non-public item emptied: what greedy scores (valid, public-only)."""
    if task == "em":
        out = np.zeros_like(maps)
        keep = [z for z, u in usage.items() if u == "Public"]
        out[keep] = maps[keep]
        return out
    return {k: v if usage.get(k) == "Public" else np.zeros_like(v) for k, v in maps.items()}


def _usage(comp: PreparedCompetition, solution) -> dict:
    if comp.task.name == "em":
        return dict(enumerate(solution.usage or []))
    if comp.task.name == "landmarks":
        return dict(zip(solution.specimens, solution.usage or [None] * len(solution.specimens),
                        strict=True))
    return {k: image.usage for k, image in solution.items()}


def build(comp_dir: Path, refs: list[str], method: str = "mean",
          weights: list[float] | None = None, rounds: int = 10, team: str = "ensemble",
          submit: bool = True, config: tracking.TrackingConfig | None = None
          ) -> dict[str, Any]:
    """Combine, post-process, write, submit and log an ensemble; returns its record."""
    comp = PreparedCompetition.open(comp_dir)
    task = comp.task.name
    if method not in METHODS:
        raise CompetitionError(f"--method {method}: choose one of {', '.join(METHODS)}")
    if not refs:
        raise CompetitionError("name at least one member (MLflow run id or submission id)")
    config = config or tracking.load_config()
    members = load_members(comp, refs, config)
    _check_compatible([m.maps for m in members], [m.ref for m in members])
    post = {k: _number(members[0].params[k]) for k in POSTPROCESS_KEYS
            if k in members[0].params}
    inputs = datasets.load_inputs(comp)
    trajectory: list[float] = []
    if method == "greedy":
        if weights is not None:
            raise CompetitionError("greedy chooses its own weights; drop --weights")
        solution = comp.load_solution()
        usage = _usage(comp, solution)
        if "Public" not in usage.values():
            raise CompetitionError("greedy selection needs a public split to choose on")

        def public_score(bag: list[int]) -> float:
            maps = _public_only(task, combine([members[k].maps for k in bag]), usage)
            data = datasets.submission_bytes(task, inputs, predictions_from_maps(task, maps,
                                                                                 post))
            return comp.task.score(data, solution, only="Public").score

        bag, trajectory = greedy_selection(len(members), public_score, rounds,
                                           comp.task.higher_is_better)
        weights = bag_weights(bag, len(members))
        combined = combine([m.maps for m in members], "mean", weights)
    else:
        combined = combine([m.maps for m in members], method, weights)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = comp.root / "runs" / f"ensemble-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ("submission" + comp.task.submission_suffix)
    path.write_bytes(datasets.submission_bytes(task, inputs, predictions_from_maps(
        task, combined, post)))
    (out_dir / "predictions.npz").write_bytes(maps_format.to_npz(task, combined))
    record: dict[str, Any] = {
        "competition": comp.name, "method": method, "weights": weights,
        "members": [{"ref": m.ref, "run_id": m.run_id, "name": m.name,
                     "public_score": m.public_score} for m in members],
        "greedy_public_scores": trajectory, "postprocess": post, "submission": str(path),
    }
    if submit:
        from competition.submissions import SubmissionStore

        outcome = SubmissionStore(comp).submit(path, team, f"ensemble ({method}) of "
                                               + ", ".join(m.ref for m in members))
        record.update(submission_id=outcome.id, status=outcome.status,
                      public_score=outcome.public_score, error=outcome.error)
    _log(comp, record, members, out_dir, config)
    (out_dir / "ensemble.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    return record


def _log(comp, record, members, out_dir, config) -> None:
    tags = {"kind": "ensemble", "competition": comp.name, "task": comp.task.name,
            "method": record["method"], "members": ",".join(m.run_id for m in members),
            "submission_id": record.get("submission_id", "none")}
    for k, m in enumerate(members):
        tags[f"member.{k}"] = m.run_id
    with tracking.training_run(comp.name, out_dir.name, tags, config) as run:
        run.log(params={"method": record["method"], "members": len(members),
                        "weights": record["weights"], **record["postprocess"]},
                metrics={"public_score": record["public_score"]}
                if record.get("public_score") is not None else None)
        for step, value in enumerate(record["greedy_public_scores"], start=1):
            run.log_epoch(step, {"greedy_public_score": value})
        run.log_file(out_dir / "predictions.npz", "predictions")
        run.log_file(Path(record["submission"]), "submission")
        record["mlflow_run_id"] = run.run_id


def _number(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() else value
