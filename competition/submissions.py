"""Submitting, retrying, selecting and rescoring: the rules, kept atomically in the store.

A submission is kept as an immutable content-addressed copy, a slot is reserved against the
daily limit in one transaction, and the file is scored in a child process. Invalid and failed
submissions give their slot back. A scorer that dies (even by SIGKILL) leaves the submission
`failed` and retryable; a submitting process that dies leaves a `pending` row that the next
command marks `failed`.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from competition import __version__, tracking
from competition.errors import CompetitionError, SubmissionError
from competition.prepared import PreparedCompetition
from competition.rules import Rules, utc_day, utcnow
from competition.scoring import read_submission_file
from competition.store import db
from competition.store.files import read_file, store_file
from competition.store.schema import (
    credentials,
    item_scores,
    score_history,
    selections,
    submissions,
    teams,
)
from competition.store.schema import (
    members as members_table,
)
from competition.tasks.base import jsonable

COUNTED_STATUSES = ("pending", "scored")
# Failure tests set this to hold the scorer child for a while, so it can be killed mid-run.
PAUSE_ENV = "COMPETITION_SCORER_PAUSE"


class RuleError(CompetitionError):
    """A refusal under the rules (unknown team, selection limit...)."""


class LimitReached(RuleError):
    """The team's submissions of the UTC day are used up."""


class Closed(RuleError):
    """Before the start or after the deadline."""


@dataclass
class Outcome:
    """What a participant may see of one submission."""

    id: int
    team: str
    status: str
    submitted_at: datetime
    file_name: str
    public_score: float | None = None
    private_score: float | None = None  # filled only when the rules allow it to be shown
    error: str | None = None
    message: str | None = None
    duplicate_of: int | None = None
    selected: bool = False
    remaining_today: int | None = None

    def as_json(self, show_private: bool) -> dict[str, Any]:
        out = {
            "id": self.id, "team": self.team, "status": self.status,
            "submitted_at": self.submitted_at.isoformat() + "Z", "file_name": self.file_name,
            "public_score": self.public_score, "error": self.error, "message": self.message,
            "duplicate_of": self.duplicate_of, "selected": self.selected,
        }
        if self.remaining_today is not None:
            out["remaining_today"] = self.remaining_today
        if show_private:
            out["private_score"] = self.private_score
        return out


@dataclass
class ScoredFile:
    status: str  # scored, invalid or failed
    public: float | None = None
    private: float | None = None
    error: str | None = None
    items: list[tuple[str, str | None, list[float]]] = field(default_factory=list)
    score: float | None = None  # the whole hidden split's
    details: dict[str, Any] = field(default_factory=dict)  # for tracking: "public", "all"
    rows: list[dict[str, Any]] = field(default_factory=list)  # per item, for tracking
    item_kind: str = "item"  # what a row is (the task's ScoreResult.item_kind)


class SubmissionStore:
    def __init__(self, comp: PreparedCompetition, url: str | None = None, now=utcnow,
                 start_method: str = "fork"):
        """`start_method` of the scorer processes: "fork" (fast; for single-threaded callers
        like the CLI) or "forkserver" (for threaded servers, where a plain fork could copy a
        lock held by another thread into the child)."""
        self.comp = comp
        self.start_method = start_method
        self.rules = Rules.from_config(comp.rules)
        self.engine = db.make_engine(url or db.store_url(comp.root, comp.store_url))
        self.now = now
        self.host = socket.gethostname()
        self.scorer_version = f"competition {__version__} ({comp.task.name})"
        self.tracking = tracking.load_config()

    # --- reading ---------------------------------------------------------------------------

    @property
    def private_visible(self) -> bool:
        return self.rules.is_over(self.now())

    def team_id(self, conn, name: str) -> int | None:
        return conn.execute(select(teams.c.id).where(teams.c.name == name)).scalar()

    def list(self, team: str) -> list[Outcome]:
        self.reconcile()
        with db.read(self.engine) as conn:
            team_id = self.team_id(conn, team)
            if team_id is None:
                raise RuleError(f"no team {team!r} in this competition")
            chosen = set(conn.execute(select(selections.c.submission_id)
                                      .where(selections.c.team_id == team_id)).scalars())
            rows = conn.execute(select(submissions).where(submissions.c.team_id == team_id)
                                .order_by(submissions.c.id)).mappings().all()
        return [self._outcome(row, team, row["id"] in chosen) for row in rows]

    def _outcome(self, row, team: str, selected: bool = False) -> Outcome:
        return Outcome(row["id"], team, row["status"], row["submitted_at"], row["file_name"],
                       row["public_score"], row["private_score"], row["error"],
                       row["message"], row["duplicate_of"], selected)

    def get(self, submission_id: int) -> dict | None:
        """A submission's row, with its team's name as `team`."""
        with db.read(self.engine) as conn:
            row = conn.execute(select(submissions, teams.c.name.label("team"))
                               .join(teams, teams.c.id == submissions.c.team_id)
                               .where(submissions.c.id == submission_id)).mappings().first()
        return dict(row) if row else None

    # --- credentials -------------------------------------------------------------------------

    def issue_team_token(self, name: str) -> str:
        """A new access token for the team (replacing any earlier one); only its hash is kept."""
        team_id = self._ensure_team(name, self.now())
        token = secrets.token_urlsafe(24)
        with db.write(self.engine) as conn:
            conn.execute(update(teams).where(teams.c.id == team_id)
                         .values(token_sha256=_hash(token)))
        return token

    def issue_organizer_token(self) -> str:
        token = secrets.token_urlsafe(24)
        with db.write(self.engine) as conn:
            conn.execute(credentials.delete().where(credentials.c.name == "organizer"))
            conn.execute(insert(credentials).values(name="organizer", token_sha256=_hash(token)))
        return token

    def who(self, token: str | None) -> tuple[str, str | None] | None:
        """("organizer", None) or ("team", name) for a valid token, else None."""
        if not token:
            return None
        digest = _hash(token)
        with db.read(self.engine) as conn:
            if conn.execute(select(credentials.c.name).where(
                    credentials.c.token_sha256 == digest)).scalar() == "organizer":
                return ("organizer", None)
            name = conn.execute(select(teams.c.name).where(teams.c.token_sha256 == digest)
                                ).scalar()
        return ("team", name) if name is not None else None

    def teams_overview(self) -> list[dict[str, Any]]:
        with db.read(self.engine) as conn:
            rows = conn.execute(select(teams.c.id, teams.c.name, teams.c.created_at,
                                       teams.c.token_sha256.is_not(None).label("has_token"))
                                .order_by(teams.c.name)).mappings().all()
            names: dict[int, list[str]] = {}
            for team_id, member in conn.execute(select(members_table.c.team_id,
                                                       members_table.c.name)):
                names.setdefault(team_id, []).append(member)
            counts = dict(conn.execute(select(submissions.c.team_id, func.count())
                                       .group_by(submissions.c.team_id)).all())
        return [{"team": r["name"], "created_at": r["created_at"],
                 "has_token": bool(r["has_token"]), "members": sorted(names.get(r["id"], [])),
                 "submissions": counts.get(r["id"], 0)} for r in rows]

    def all_submissions(self) -> list[dict[str, Any]]:
        """Every submission with its team (organizer view)."""
        with db.read(self.engine) as conn:
            return [dict(r) for r in conn.execute(
                select(submissions.c.id, teams.c.name.label("team"), submissions.c.status,
                       submissions.c.submitted_at, submissions.c.file_name,
                       submissions.c.public_score, submissions.c.private_score,
                       submissions.c.error, submissions.c.message)
                .join(teams, teams.c.id == submissions.c.team_id)
                .order_by(submissions.c.id)).mappings()]

    def add_team(self, name: str, members: list[str]) -> list[str]:
        """Create a team (if new) and add members; returns all its members."""
        if not name.strip():
            raise RuleError("the team name is empty")
        team_id = self._ensure_team(name, self.now())
        with db.write(self.engine) as conn:
            known = set(conn.execute(select(members_table.c.name)
                                     .where(members_table.c.team_id == team_id)).scalars())
            new = [m for m in dict.fromkeys(members) if m.strip() and m not in known]
            if new:
                conn.execute(insert(members_table), [{"team_id": team_id, "name": m}
                                                     for m in new])
        return sorted(known | set(new))

    # --- submitting ------------------------------------------------------------------------

    def submit(self, path: Path, team: str, message: str | None = None) -> Outcome:
        """Keep, validate and score one file for `team` under the rules."""
        self.reconcile()
        if not team.strip():
            raise RuleError("the team name is empty")
        data = read_submission_file(path, self.comp.max_submission_bytes)
        digest, rel = store_file(self.comp.root, data, self.comp.task.submission_suffix)
        now = self.now()
        self._check_open(now)
        team_id = self._ensure_team(team, now)
        with db.write(self.engine) as conn:
            self._lock_team(conn, team_id)
            earlier = conn.execute(
                select(submissions.c.id).where(and_(
                    submissions.c.team_id == team_id, submissions.c.file_sha256 == digest,
                    submissions.c.status == "scored"))
                .order_by(submissions.c.id).limit(1)).scalar()
            values = dict(team_id=team_id, submitted_at=now, file_name=Path(path).name,
                          file_sha256=digest, file_path=rel, message=message)
            if earlier is not None:
                new_id = conn.execute(insert(submissions).values(
                    **values, status="duplicate", counted=False, duplicate_of=earlier,
                    error=f"same file as submission {earlier}: not scored again")
                ).inserted_primary_key[0]
                outcome = self._outcome(conn.execute(select(submissions).where(
                    submissions.c.id == new_id)).mappings().one(), team)
                original = conn.execute(select(submissions.c.public_score,
                                               submissions.c.private_score)
                                        .where(submissions.c.id == earlier)).one()
                outcome.public_score, outcome.private_score = original
                outcome.remaining_today = self.rules.daily_limit - self._used_today(
                    conn, team_id, now)
                return outcome
            used = self._used_today(conn, team_id, now)
            if used >= self.rules.daily_limit:
                reset = utc_day(now)[1]
                raise LimitReached(
                    f"team {team!r} has used its {self.rules.daily_limit} submissions of "
                    f"today (UTC); the limit resets at {reset.isoformat()}Z "
                    "(invalid and failed submissions do not count)")
            new_id = conn.execute(insert(submissions).values(
                **values, status="pending", counted=True, scorer_host=self.host,
                owner_pid=os.getpid(), scorer_pid=None)).inserted_primary_key[0]
        return self._score_and_record(new_id, team, data, Path(path).name)

    def retry(self, submission_id: int, team: str | None = None) -> Outcome:
        """Score a failed submission again (it takes a slot of the day again)."""
        self.reconcile()
        now = self.now()
        self._check_open(now)
        with db.write(self.engine) as conn:
            row = conn.execute(select(submissions, teams.c.name.label("team"))
                               .join(teams, teams.c.id == submissions.c.team_id)
                               .where(submissions.c.id == submission_id)).mappings().first()
            if row is None or (team is not None and row["team"] != team):
                raise RuleError(f"no submission {submission_id}"
                                + (f" of team {team!r}" if team else ""))
            if row["status"] != "failed":
                raise RuleError(f"submission {submission_id} is {row['status']}; only failed "
                                "submissions can be retried")
            self._lock_team(conn, row["team_id"])
            if self._used_today(conn, row["team_id"], now) >= self.rules.daily_limit:
                raise LimitReached(f"team {row['team']!r} has no submissions left today (UTC)")
            conn.execute(update(submissions).where(submissions.c.id == submission_id).values(
                status="pending", counted=True, error=None, scorer_host=self.host,
                owner_pid=os.getpid(), scorer_pid=None))
        data = read_file(self.comp.root, row["file_path"])
        return self._score_and_record(submission_id, row["team"], data, row["file_name"])

    def _check_open(self, now: datetime) -> None:
        if self.rules.start is not None and now < self.rules.start:
            raise Closed(f"the competition opens at {self.rules.start.isoformat()}Z")
        if self.rules.deadline is not None and now >= self.rules.deadline:
            raise Closed(f"the competition closed at {self.rules.deadline.isoformat()}Z; "
                            "no more submissions")

    def _ensure_team(self, name: str, now: datetime) -> int:
        for _ in range(5):
            with db.write(self.engine) as conn:
                team_id = self.team_id(conn, name)
                if team_id is not None:
                    return team_id
                try:
                    return conn.execute(insert(teams).values(name=name, created_at=now)
                                        ).inserted_primary_key[0]
                except IntegrityError:
                    pass  # created by a concurrent submission: read it back
        raise RuleError(f"could not create team {name!r}")

    def _lock_team(self, conn, team_id: int) -> None:
        """Serialise one team's reservations on SQL servers (SQLite's write lock already
        serialises every writer)."""
        if conn.dialect.name != "sqlite":
            conn.execute(select(teams.c.id).where(teams.c.id == team_id).with_for_update())

    def _used_today(self, conn, team_id: int, now: datetime) -> int:
        start, end = utc_day(now)
        return conn.execute(select(func.count()).select_from(submissions).where(and_(
            submissions.c.team_id == team_id, submissions.c.counted.is_(True),
            submissions.c.status.in_(COUNTED_STATUSES),
            submissions.c.submitted_at >= start, submissions.c.submitted_at < end))).scalar()

    # --- scoring ---------------------------------------------------------------------------

    def _score_and_record(self, submission_id: int, team: str, data: bytes,
                          file_name: str) -> Outcome:
        result = self._score_in_child(submission_id, data, file_name)
        with db.write(self.engine) as conn:
            self._record(conn, submission_id, result, reason="submit")
            row = conn.execute(select(submissions).where(submissions.c.id == submission_id)
                               ).mappings().one()
            outcome = self._outcome(row, team)
            outcome.remaining_today = self.rules.daily_limit - self._used_today(
                conn, row["team_id"], self.now())
        self._track(dict(row), team, result, "submit")
        return outcome

    def _track(self, row: dict, team: str, result: ScoredFile, reason: str) -> None:
        """Log a scored submission to MLflow, after the store has committed it."""
        if result.status != "scored" or not self.tracking.enabled:
            return
        tracking.submission_runs(tracking.SubmissionRecord(
            competition=self.comp.name, task=self.comp.task.name, submission_id=row["id"],
            team=team, file_sha256=row["file_sha256"], scorer_version=self.scorer_version,
            solution_sha256=self.comp.solution_sha256(), public_score=result.public,
            private_score=result.private, score=result.score, details=result.details,
            rows=result.rows, item_kind=result.item_kind, reason=reason), self.tracking)

    def _score_in_child(self, submission_id: int | None, data: bytes,
                        file_name: str) -> ScoredFile:
        """Score in a forked child: a crash or kill of the scorer cannot take the store down,
        and is recorded as a failure. The child's pid is recorded on the pending submission
        `submission_id` (None when rescoring, which must write nothing before it commits)."""
        ctx = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver":
            ctx.set_forkserver_preload(["competition.submissions", "competition.tasks"])
        receive, send = ctx.Pipe(duplex=False)
        # Not a daemon: the EM scorer spreads slices over processes of its own.
        child = ctx.Process(target=_child_main,
                            args=(send, str(self.comp.root), data, file_name,
                                  self.tracking.enabled))
        child.start()
        send.close()
        if submission_id is not None:
            with db.write(self.engine) as conn:
                conn.execute(update(submissions).where(submissions.c.id == submission_id)
                             .values(scorer_pid=child.pid))
        try:
            payload = receive.recv()
        except EOFError:
            payload = None
        child.join()
        if payload is None:
            how = (f"killed by signal {-child.exitcode}" if child.exitcode and
                   child.exitcode < 0 else f"exit code {child.exitcode}")
            return ScoredFile("failed", error=f"the scorer stopped before finishing ({how}); "
                                              "the submission can be retried")
        return ScoredFile(**payload)

    def _record(self, conn, submission_id: int, result: ScoredFile, reason: str) -> None:
        now = self.now()
        counted = result.status == "scored"
        conn.execute(update(submissions).where(submissions.c.id == submission_id).values(
            status=result.status, counted=counted, error=result.error,
            public_score=result.public, private_score=result.private,
            scorer_version=self.scorer_version, solution_sha256=self.comp.solution_sha256(),
            scored_at=now))
        conn.execute(item_scores.delete().where(item_scores.c.submission_id == submission_id))
        if result.items:
            conn.execute(insert(item_scores), [
                {"submission_id": submission_id, "position": k, "item": item, "usage": usage,
                 "item_values": json.dumps(values)}
                for k, (item, usage, values) in enumerate(result.items)])
        conn.execute(insert(score_history).values(
            submission_id=submission_id, status=result.status, public_score=result.public,
            private_score=result.private, scorer_version=self.scorer_version,
            solution_sha256=self.comp.solution_sha256(), recorded_at=now, reason=reason))

    def reconcile(self) -> int:
        """Mark `pending` submissions as failed (retryable) once both the process that
        submitted them and its scorer are gone: nobody is left to record their outcome."""
        with db.read(self.engine) as conn:
            pending = conn.execute(select(submissions.c.id, submissions.c.owner_pid,
                                          submissions.c.scorer_pid, submissions.c.scorer_host)
                                   .where(submissions.c.status == "pending")).all()
        dead = [sid for sid, owner, scorer, host in pending
                if host == self.host and not _alive(owner) and not _alive(scorer)]
        if dead:
            with db.write(self.engine) as conn:
                conn.execute(update(submissions).where(and_(
                    submissions.c.id.in_(dead), submissions.c.status == "pending")).values(
                    status="failed", counted=False,
                    error="scoring was interrupted; the submission can be retried"))
        return len(dead)

    # --- selecting and rescoring -------------------------------------------------------------

    def select(self, submission_id: int, team: str) -> list[int]:
        """Choose a final selection; returns the team's selections."""
        now = self.now()
        if self.rules.is_over(now):
            raise RuleError("the deadline has passed: final selections are frozen")
        with db.write(self.engine) as conn:
            team_id = self.team_id(conn, team)
            row = conn.execute(select(submissions.c.team_id, submissions.c.status)
                               .where(submissions.c.id == submission_id)).first()
            if team_id is None or row is None or row.team_id != team_id:
                raise RuleError(f"no submission {submission_id} of team {team!r}")
            if row.status != "scored":
                raise RuleError(f"submission {submission_id} is {row.status}; only scored "
                                "submissions can be selected")
            chosen = list(conn.execute(select(selections.c.submission_id).where(
                selections.c.team_id == team_id)).scalars())
            if submission_id not in chosen:
                if len(chosen) >= self.rules.final_selections:
                    raise RuleError(f"team {team!r} already has {len(chosen)} final "
                                    f"selections (the limit); unselect one first")
                conn.execute(insert(selections).values(team_id=team_id,
                                                       submission_id=submission_id,
                                                       selected_at=now))
                chosen.append(submission_id)
        return sorted(chosen)

    def unselect(self, submission_id: int, team: str) -> None:
        with db.write(self.engine) as conn:
            team_id = self.team_id(conn, team)
            conn.execute(selections.delete().where(and_(
                selections.c.team_id == team_id, selections.c.submission_id == submission_id)))

    def rescore(self) -> list[dict[str, Any]]:
        """Score every stored submission again with the current scorer and solution, then
        write all results in one transaction. Returns what changed."""
        self.reconcile()
        with db.read(self.engine) as conn:
            rows = conn.execute(select(submissions).where(
                submissions.c.status.in_(("scored", "invalid", "failed")))
                .order_by(submissions.c.id)).mappings().all()
        results = {row["id"]: self._score_in_child(
            None, read_file(self.comp.root, row["file_path"]), row["file_name"])
            for row in rows}
        changes = []
        with db.write(self.engine) as conn:
            for row in rows:
                new = results[row["id"]]
                self._record(conn, row["id"], new, reason="rescore")
                if (row["status"], _r(row["public_score"]), _r(row["private_score"])) != \
                        (new.status, _r(new.public), _r(new.private)):
                    changes.append({"id": row["id"], "old_status": row["status"],
                                    "new_status": new.status,
                                    "old_public": row["public_score"], "new_public": new.public,
                                    "old_private": row["private_score"],
                                    "new_private": new.private})
            conn.execute(update(submissions).where(submissions.c.status == "duplicate")
                         .values(scorer_version=self.scorer_version,
                                 solution_sha256=self.comp.solution_sha256()))
            names = dict(conn.execute(select(teams.c.id, teams.c.name)).all())
        for row in rows:
            self._track(dict(row), names[row["team_id"]], results[row["id"]], "rescore")
        return changes


def _hash(token: str) -> str:
    # Tokens are 192-bit random strings: a plain SHA-256 cannot be brute-forced back.
    return hashlib.sha256(token.encode()).hexdigest()


def _r(value):
    return None if value is None else round(float(value), 12)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _child_main(send, root: str, data: bytes, file_name: str, details: bool = False) -> None:
    """The scorer: score `data` and send a plain payload (never the exception object); with
    `details`, also the detail metrics of the public split and of the whole hidden split."""
    pause = float(os.environ.get(PAUSE_ENV, "0") or 0)
    if pause:
        time.sleep(pause)
    try:
        comp = PreparedCompetition.open(root)
        task = comp.task
        solution = comp.load_solution()
        reference = comp.load_reference(solution)
        result = task.score(data, solution, reference)
        items = [(str(result.item_id(it)), it.get("usage"), task.item_values(it))
                 for it in result.items]
        payload = {"status": "scored", "public": _finite(result.public),
                   "private": _finite(result.private), "items": items,
                   "score": _finite(result.score)}
        if details:
            payload["details"] = {"all": jsonable(result.fields)}
            if result.public is not None:
                payload["details"]["public"] = jsonable(
                    task.score(data, solution, reference, only="Public").fields)
            payload["rows"] = jsonable(result.items)
            payload["item_kind"] = result.item_kind
    except SubmissionError as e:
        payload = {"status": "invalid", "error": str(e.located(file_name))}
    except Exception as e:  # a scorer bug: recorded, retryable, never a lost submission
        payload = {"status": "failed", "error": f"scorer error: {type(e).__name__}: {e}"}
    send.send(payload)
    send.close()


def _finite(value):
    import math

    return value if value is not None and math.isfinite(value) else None
