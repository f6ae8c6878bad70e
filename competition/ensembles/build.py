"""Ensembles of runs: combine members' prediction maps, post-process, submit, log.

Members are MLflow training runs that logged their test predictions (`competition run` does),
named by run id or by the id of the submission they made. `mean` and `median` combine maps
element-wise; `greedy` is forward selection with replacement (Caruana et al., 2004) that
chooses on out-of-fold maps: each member's `competition cv` folder (`cv`, one per member, of
the same entry and configuration) holds every training item predicted by a fold model that
did not train on it, and a bag of members scores as the official score of their combined,
post-processed maps against the training labels. The hidden solution, its public split
included, is never read for the choice; the chosen ensemble is then submitted as any other.
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

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from competition.board.prepared import PreparedCompetition
from competition.ensembles.combine import (
    bag_weights,
    check_compatible,
    combine,
    greedy_selection,
)
from competition.errors import CompetitionError
from competition.formats import maps as maps_format
from competition.formats.files import SubmissionFile
from competition.outputs import fresh_folder
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
        expected = tracker.config.experiment(comp.key, "participants", owner)
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
        # By id: another folder of the same kind has the same name (issue 28).
        if run.data.tags.get(tracking.ID_TAG) != comp.key.required_id():
            raise CompetitionError(f"member {ref}: run of competition "
                                   f"{run.data.tags.get('competition')!r} (id "
                                   f"{run.data.tags.get(tracking.ID_TAG)}), not of "
                                   f"{comp.name!r} (id {comp.key.id})")
        return run
    if ref.isdigit():
        runs = tracker.runs(comp.key, f"tags.submission_id = '{int(ref)}' and "
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
          baseline: bool = True, cv: list[Path] | None = None) -> dict[str, Any]:
    """Combine, post-process, write, submit (as an organizers' baseline unless `baseline` is
    False) and log an ensemble of runs that are `team`'s own; returns its record. `cv`: the
    members' `competition cv` folders, in member order, which greedy chooses on."""
    comp = PreparedCompetition.open(comp_dir)
    task = comp.task
    if method not in METHODS:
        raise CompetitionError(f"--method {method}: choose one of {', '.join(METHODS)}")
    if not refs:
        raise CompetitionError("name at least one member (MLflow run id or submission id)")
    cv = [Path(f) for f in cv or []]
    if method == "greedy" and not cv:
        raise CompetitionError(
            "greedy chooses on out-of-fold maps, never on the hidden split: run `competition "
            "cv DIR ENTRY` for each member (its entry and configuration) and pass the folders "
            "with --cv, one per member, in member order")
    if cv and method != "greedy":
        raise CompetitionError(f"--cv is for --method greedy: {method} chooses nothing, so "
                               "it would be ignored; drop --cv")
    if cv and len(cv) != len(refs):
        raise CompetitionError(f"{len(cv)} --cv folders for {len(refs)} members: give one "
                               "per member, in member order")
    if method == "greedy" and weights is not None:
        raise CompetitionError("greedy chooses its own weights; drop --weights")
    config = config or load_config()
    members = load_members(comp, refs, config, team=team, baseline=baseline)
    check_compatible([m.maps for m in members], [m.ref for m in members])
    post = {k: _number(members[0].params[k]) for k in task.postprocess_keys
            if k in members[0].params}
    inputs = task.load_inputs(comp.public_dir)
    trajectory: list[float] = []
    runs_dir = comp.root / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    if method == "greedy":
        weights, trajectory = _greedy_on_oof(comp, members, cv, post, rounds, runs_dir)
        combined = combine([m.maps for m in members], "mean", weights)
    else:
        combined = combine([m.maps for m in members], method, weights)
    out_dir = fresh_folder(runs_dir, "ensemble")
    path = out_dir / ("submission" + task.submission_suffix)
    path.write_bytes(task.write_submission(inputs, task.predictions_from_maps(combined, post)))
    (out_dir / "predictions.npz").write_bytes(maps_format.to_npz(combined, task.map_dtype))
    record: dict[str, Any] = {
        "competition": comp.name, "method": method, "weights": weights,
        "members": [{"ref": m.ref, "run_id": m.run_id, "name": m.name,
                     "public_score": m.public_score} for m in members],
        "cv": [str(f) for f in cv], "greedy_oof_scores": trajectory, "postprocess": post,
        "submission": str(path),
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


def _greedy_on_oof(comp: PreparedCompetition, members: list[Member], cv: list[Path],
                   post: dict[str, Any], rounds: int,
                   scratch: Path) -> tuple[list[float], list[float]]:
    """Greedy selection scored on the members' out-of-fold maps of the training items against
    the training labels (the official scorer); returns the weights and the score by round."""
    task = comp.task
    train = task.load_train(comp.public_dir)
    inputs = task.inputs_of(train)
    # Maps are keyed by the ids of the data's items (a patient's slices, not the patient).
    keys = task.item_ids(inputs)
    oof = [_oof_maps(comp, folder, member, {str(k) for k in keys})
           for folder, member in zip(cv, members, strict=True)]
    check_compatible(oof, [str(f) for f in cv])
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        truths = task.load_solution(task.write_solution(train, Path(tmp) / "truth"))
        candidate = Path(tmp) / ("candidate" + task.submission_suffix)

        def oof_score(bag: list[int]) -> float:
            maps = combine([oof[k] for k in bag])
            candidate.write_bytes(task.write_submission(
                inputs, task.predictions_from_maps(maps, post)))
            with SubmissionFile(candidate, comp.limits, str(candidate)) as submission:
                return task.score(submission, truths).score

        bag, trajectory = greedy_selection(len(members), oof_score, rounds,
                                           task.higher_is_better)
    return bag_weights(bag, len(members)), trajectory


def _oof_maps(comp: PreparedCompetition, folder: Path, member: Member,
              training: set[str]) -> Maps:
    """The out-of-fold maps of `folder`, once it is known to cross-validate the member's entry
    and configuration on this competition and to cover exactly the training items."""
    try:
        record = json.loads((folder / "cv.json").read_text())
    except (OSError, ValueError):
        raise CompetitionError(f"--cv {folder}: no readable cv.json (give the folder "
                               "`competition cv` wrote, DIR/cv/ENTRY-TIME)") from None
    if record.get("competition") != comp.name:
        raise CompetitionError(f"--cv {folder}: cross-validation on "
                               f"{record.get('competition')!r}, not {comp.name!r}")
    entry = member.params.get("entry")
    if entry is not None and record.get("entry") != entry:
        raise CompetitionError(
            f"--cv {folder}: cross-validates {record.get('entry')!r} but member {member.ref} "
            f"is a run of {entry!r} (one --cv per member, in member order)")
    differ = sorted(k for k, v in (record.get("config") or {}).items()
                    if k in member.params and member.params[k] != str(v))
    if differ:
        raise CompetitionError(
            f"--cv {folder}: configuration differs from member {member.ref}'s in "
            f"{', '.join(differ)} (cross-validate the member's own configuration)")
    path = folder / "oof_maps.npz"
    if not path.is_file():
        raise CompetitionError(f"--cv {folder}: no oof_maps.npz (only entries that define "
                               "probabilities() keep out-of-fold maps)")
    maps = maps_format.from_npz(path.read_bytes(), str(path))
    if set(maps) != training:
        missing, extra = sorted(training - set(maps)), sorted(set(maps) - training)
        raise CompetitionError(
            f"--cv {folder}: its out-of-fold maps do not cover exactly this competition's "
            f"training items ({len(missing)} missing, e.g. {missing[:3]}; {len(extra)} not "
            f"training items, e.g. {extra[:3]})")
    return maps


def _log(comp: PreparedCompetition, record: dict[str, Any], members: list[Member],
         out_dir: Path, config: TrackingConfig, team: str) -> None:
    tags = {"kind": "ensemble", "competition": comp.name, "task": comp.task.name, "team": team,
            "method": record["method"], "members": ",".join(m.run_id for m in members),
            "submission_id": record.get("submission_id", "none")}
    for k, m in enumerate(members):
        tags[f"member.{k}"] = m.run_id
    for k, folder in enumerate(record["cv"]):
        tags[f"cv.{k}"] = folder
    with tracking.training_run(comp.key, out_dir.name, tags, config) as run:
        run.log(params={"method": record["method"], "members": len(members),
                        "weights": record["weights"], **record["postprocess"]},
                metrics={"public_score": record["public_score"]}
                if record.get("public_score") is not None else None)
        for step, value in enumerate(record["greedy_oof_scores"], start=1):
            run.log_epoch(step, {"greedy_oof_score": value})
        run.log_file(out_dir / "predictions.npz", "predictions")
        run.log_file(Path(record["submission"]), "submission")
        record["mlflow_run_id"] = run.run_id


def _number(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() else value
