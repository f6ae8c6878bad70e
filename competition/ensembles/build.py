"""Ensembles of runs: combine members' prediction maps, post-process, submit, log.

Members are MLflow training runs that logged their test predictions (`competition run` does),
named by run id or by the id of the submission they made. `mean` and `median` combine maps
element-wise; `greedy` is forward selection with replacement (Caruana et al., 2004) that
chooses members by the public split's score only: the private split is never scored here.
The task post-processes the combined maps (`predictions_from_maps`) with the members' own
post-processing settings (`postprocess_keys`), so an ensemble post-processes as they do.

Whose runs may be combined. A run's owner is the team named by its tag `team` (set by
`competition run`, ensembles and scored submissions); with team experiments
(`team_experiment_name`) the run must also lie in that team's experiment, where only that
team (and the organizers) can write. An ensemble submitted as participant team T
(`--as-participant --team T`) combines only runs owned by T; an organizers' baseline (the
default) combines only runs of teams that are not participant teams on the board (baseline
teams, or teams that never submitted). Any other member, or one with no `team` tag, is
refused, naming the member.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from competition.board.prepared import PreparedCompetition
from competition.board.scoring import Scorer
from competition.ensembles.combine import (
    bag_weights,
    check_compatible,
    combine,
    greedy_selection,
    public_only,
)
from competition.errors import CompetitionError
from competition.formats import maps as maps_format
from competition.tasks.base import Maps
from competition.tracking import runs as tracking
from competition.tracking.config import SWITCH_ENV, TrackingConfig, load_config

METHODS = ("mean", "median", "greedy")


@dataclass
class Member:
    ref: str  # as given
    run_id: str
    name: str
    public_score: float | None
    params: dict[str, str]
    maps: Maps


# --- members from MLflow (I/O) ---------------------------------------------------------------

RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def load_members(comp: PreparedCompetition, refs: list[str], config: TrackingConfig,
                 *, team: str = "ensemble", baseline: bool = True) -> list[Member]:
    """The members' runs and maps, once each is known to be `team`'s own (see the module
    docstring for the rule)."""
    if not config.enabled:
        raise CompetitionError("ensembles read their members from MLflow, and tracking is off "
                               f"(${SWITCH_ENV})")
    tracker = tracking.Tracker(config, "participants", team)
    competing = _participant_teams(comp) if baseline else set()
    members = []
    for ref in refs:
        run = _find_run(tracker, comp, ref)
        _check_owner(tracker, comp, ref, run, team, baseline=baseline, competing=competing)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = tracker.download(run.info.run_id, tracking.PREDICTIONS_ARTIFACT,
                                        Path(tmp))
            except Exception:
                raise CompetitionError(
                    f"member {ref}: run {run.info.run_id} logged no test predictions "
                    f"({tracking.PREDICTIONS_ARTIFACT}); entries that define probabilities() "
                    "log them with `competition run`") from None
            maps = maps_format.from_npz(path.read_bytes(), f"member {ref}")
        members.append(Member(ref, run.info.run_id, run.info.run_name or ref,
                              run.data.metrics.get("public_score"), dict(run.data.params),
                              maps))
    return members


def _participant_teams(comp: PreparedCompetition) -> set[str]:
    from competition.board.board import Board

    return {_key(t["team"]) for t in Board(comp).teams.overview() if not t["baseline"]}


def _key(team: str) -> str:
    return " ".join(team.casefold().split())


def _check_owner(tracker: tracking.Tracker, comp: PreparedCompetition, ref: str, run: Any,
                 team: str, *, baseline: bool, competing: set[str]) -> None:
    run_id = run.info.run_id
    owner = run.data.tags.get("team")
    if not owner:
        raise CompetitionError(
            f"member {ref}: run {run_id} names no team (tag `team`), so it cannot be shown to "
            f"be {team!r}'s own; runs of `competition run` and of ensembles name theirs")
    if tracker.config.team_experiment_name:
        expected = tracker.config.experiment(comp.name, "participants", owner)
        actual = tracker.client.get_experiment(run.info.experiment_id).name
        if actual != expected:
            raise CompetitionError(
                f"member {ref}: run {run_id} names team {owner!r} but lies in experiment "
                f"{actual!r}, not in that team's {expected!r}")
    if not baseline and owner != team:
        raise CompetitionError(
            f"member {ref}: run {run_id} belongs to team {owner!r}, not to {team!r}: an "
            "ensemble combines only its own team's runs")
    if baseline and _key(owner) in competing:
        raise CompetitionError(
            f"member {ref}: run {run_id} belongs to the participant team {owner!r}: an "
            "organizers' baseline combines only baseline runs (submit as that team with "
            "--as-participant --team to combine its own runs)")


def _find_run(tracker: tracking.Tracker, comp: PreparedCompetition, ref: str) -> Any:
    ref = ref.strip()
    if RUN_ID.match(ref):
        try:
            run = tracker.client.get_run(ref)
        except Exception as e:
            if getattr(e, "error_code", "") == "PERMISSION_DENIED":
                raise CompetitionError(f"member {ref}: the tracking server does not let you "
                                       "read that run (another team's)") from None
            raise CompetitionError(f"member {ref}: no MLflow run with that id at "
                                   f"{tracker.uri}") from None
        if run.data.tags.get("competition") != comp.name:
            raise CompetitionError(f"member {ref}: run of competition "
                                   f"{run.data.tags.get('competition')!r}, not {comp.name!r}")
        return run
    if ref.isdigit():
        runs = tracker.runs(comp.name, f"tags.submission_id = '{int(ref)}' and "
                                       "tags.kind != 'submission'", every_team=True)
        if not runs:
            raise CompetitionError(
                f"member {ref}: submission {ref} carries no predictions (no training or "
                f"ensemble run in MLflow made it; `competition run` logs them)")
        return runs[0]
    raise CompetitionError(f"member {ref!r}: give an MLflow run id (32 hex digits) or a "
                           "submission id")


# --- the command -----------------------------------------------------------------------------

def build(comp_dir: Path, refs: list[str], method: str = "mean", *,
          weights: list[float] | None = None, rounds: int = 10, team: str = "ensemble",
          submit: bool = True, config: TrackingConfig | None = None,
          baseline: bool = True) -> dict[str, Any]:
    """Combine, post-process, write, submit (as an organizers' baseline unless `baseline` is
    False) and log an ensemble of runs that are `team`'s own; returns its record."""
    comp = PreparedCompetition.open(comp_dir)
    task = comp.task
    if method not in METHODS:
        raise CompetitionError(f"--method {method}: choose one of {', '.join(METHODS)}")
    if not refs:
        raise CompetitionError("name at least one member (MLflow run id or submission id)")
    config = config or load_config()
    members = load_members(comp, refs, config, team=team, baseline=baseline)
    check_compatible([m.maps for m in members], [m.ref for m in members])
    post = {k: _number(members[0].params[k]) for k in task.postprocess_keys
            if k in members[0].params}
    inputs = task.load_inputs(comp.public_dir)
    trajectory: list[float] = []
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = comp.root / "runs" / f"ensemble-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    if method == "greedy":
        if weights is not None:
            raise CompetitionError("greedy chooses its own weights; drop --weights")
        scorer = Scorer.load(comp)
        usage = task.usage(scorer.solution)
        if "Public" not in usage.values():
            raise CompetitionError("greedy selection needs a public split to choose on")

        def public_score(bag: list[int]) -> float:
            maps = public_only(combine([members[k].maps for k in bag]), usage)
            with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
                candidate = Path(tmp) / ("candidate" + task.submission_suffix)
                candidate.write_bytes(task.write_submission(
                    inputs, task.predictions_from_maps(maps, post)))
                return scorer.score(comp.submission(candidate), only="Public").score

        bag, trajectory = greedy_selection(len(members), public_score, rounds,
                                           task.higher_is_better)
        weights = bag_weights(bag, len(members))
        combined = combine([m.maps for m in members], "mean", weights)
    else:
        combined = combine([m.maps for m in members], method, weights)
    path = out_dir / ("submission" + task.submission_suffix)
    path.write_bytes(task.write_submission(inputs, task.predictions_from_maps(combined, post)))
    (out_dir / "predictions.npz").write_bytes(maps_format.to_npz(combined, task.map_dtype))
    record: dict[str, Any] = {
        "competition": comp.name, "method": method, "weights": weights,
        "members": [{"ref": m.ref, "run_id": m.run_id, "name": m.name,
                     "public_score": m.public_score} for m in members],
        "greedy_public_scores": trajectory, "postprocess": post, "submission": str(path),
    }
    if submit:
        from competition.board.board import Board

        outcome = Board(comp, tracking=config).submissions.submit(
            path, team, f"ensemble ({method}) of " + ", ".join(m.ref for m in members),
            baseline=baseline)
        record.update(submission_id=outcome.id, status=outcome.status,
                      public_score=outcome.public_score, error=outcome.error)
    _log(comp, record, members, out_dir, config, team)
    (out_dir / "ensemble.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    return record


def _log(comp: PreparedCompetition, record: dict[str, Any], members: list[Member],
         out_dir: Path, config: TrackingConfig, team: str) -> None:
    tags = {"kind": "ensemble", "competition": comp.name, "task": comp.task.name, "team": team,
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
