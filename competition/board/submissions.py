"""Submitting and retrying: a file kept, a slot taken, the file scored, the outcome recorded.

A submission is kept as an immutable content-addressed copy, a slot is reserved against the
daily limit in one transaction, and the file is scored in a child process. Invalid and failed
submissions give their slot back. A scorer that dies (even by SIGKILL) leaves the submission
`failed` and retryable; a submitting process that dies leaves a `pending` row that the next
command marks `failed` (the ledger's reconcile).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, and_, insert, select, update
from sqlalchemy.engine import RowMapping

from competition.board.context import BoardContext, RuleError
from competition.board.ledger import Ledger
from competition.board.scorer_process import ChildScorer, ScoredFile
from competition.board.status import Status
from competition.board.store import db
from competition.board.store.files import store_file
from competition.board.store.schema import item_scores, score_history, selections, submissions
from competition.board.store.schema import teams as teams_table
from competition.board.teams import Teams
from competition.board.views import Outcome
from competition.tracking.config import TrackingConfig


class Submissions:
    def __init__(self, ctx: BoardContext, teams: Teams, ledger: Ledger, scorer: ChildScorer,
                 tracking: TrackingConfig):
        self.ctx, self.teams, self.ledger = ctx, teams, ledger
        self.scorer, self.tracking = scorer, tracking

    # --- reading -----------------------------------------------------------------------------

    def of_team(self, team: str) -> list[Outcome]:
        """A team's submissions, oldest first, with its final selections marked."""
        self.ledger.reconcile()
        with db.read(self.ctx.engine) as conn:
            team_id = Teams.id_of(conn, team)
            if team_id is None:
                raise RuleError(f"no team {team!r} in this competition")
            chosen: set[int] = set(conn.execute(select(selections.c.submission_id)
                                                .where(selections.c.team_id == team_id)).scalars())
            rows = conn.execute(select(submissions).where(submissions.c.team_id == team_id)
                                .order_by(submissions.c.id)).mappings().all()
        return [outcome(row, team, row["id"] in chosen) for row in rows]

    def get(self, submission_id: int) -> dict[str, Any] | None:
        """A submission's row, with its team's name as `team`."""
        with db.read(self.ctx.engine) as conn:
            row = conn.execute(select(submissions, teams_table.c.name.label("team"))
                               .join(teams_table, teams_table.c.id == submissions.c.team_id)
                               .where(submissions.c.id == submission_id)).mappings().first()
        return dict(row) if row else None

    def all(self) -> list[dict[str, Any]]:
        """Every submission with its team (organizer view)."""
        with db.read(self.ctx.engine) as conn:
            return [dict(r) for r in conn.execute(
                select(submissions.c.id, teams_table.c.name.label("team"),
                       submissions.c.status, submissions.c.submitted_at,
                       submissions.c.file_name, submissions.c.public_score,
                       submissions.c.private_score, submissions.c.error, submissions.c.message)
                .join(teams_table, teams_table.c.id == submissions.c.team_id)
                .order_by(submissions.c.id)).mappings()]

    # --- submitting ------------------------------------------------------------------------

    def submit(self, path: Path, team: str, message: str | None = None,
               baseline: bool = False) -> Outcome:
        """Keep, validate and score one file for `team` under the rules (a team first seen
        here is created; as an organizers' baseline with `baseline`)."""
        self.ledger.reconcile()
        comp = self.ctx.comp
        digest, rel = store_file(comp.root, comp.submission(Path(path)),
                                 comp.task.submission_suffix)
        now = self.ctx.now()
        self.ledger.check_open(now)
        team_id = self.teams.ensure(team, now, baseline)
        with db.write(self.ctx.engine) as conn:
            self.ledger.lock_team(conn, team_id)
            values = dict(team_id=team_id, submitted_at=now, file_name=Path(path).name,
                          file_sha256=digest, file_path=rel, message=message)
            earlier = conn.execute(
                select(submissions.c.id, submissions.c.public_score,
                       submissions.c.private_score).where(and_(
                        submissions.c.team_id == team_id, submissions.c.file_sha256 == digest,
                        submissions.c.status == Status.SCORED))
                .order_by(submissions.c.id).limit(1)).first()
            if earlier is not None:
                key = conn.execute(insert(submissions).values(
                    **values, status=Status.DUPLICATE, counted=False, duplicate_of=earlier.id,
                    error=f"same file as submission {earlier.id}: not scored again")
                ).inserted_primary_key
                assert key is not None
                result = outcome(self._row(conn, int(key[0])), team)
                result.public_score, result.private_score = earlier[1], earlier[2]
                result.remaining_today = self.ledger.remaining_today(conn, team_id)
                return result
            self.ledger.reserve(conn, team_id, team, now)
            key = conn.execute(insert(submissions).values(
                **values, status=Status.PENDING, counted=True, scorer_host=self.ctx.host,
                owner_pid=os.getpid(), scorer_pid=None)).inserted_primary_key
            assert key is not None
        return self._score_and_record(int(key[0]), team, comp.root / rel, Path(path).name)

    def retry(self, submission_id: int, team: str | None = None) -> Outcome:
        """Score a failed submission again (it takes a slot of the day again)."""
        self.ledger.reconcile()
        now = self.ctx.now()
        self.ledger.check_open(now)
        with db.write(self.ctx.engine) as conn:
            row = conn.execute(select(submissions, teams_table.c.name.label("team"))
                               .join(teams_table, teams_table.c.id == submissions.c.team_id)
                               .where(submissions.c.id == submission_id)).mappings().first()
            if row is None or (team is not None and row["team"] != team):
                raise RuleError(f"no submission {submission_id}"
                                + (f" of team {team!r}" if team else ""))
            if row["status"] != Status.FAILED:
                raise RuleError(f"submission {submission_id} is {row['status']}; only failed "
                                "submissions can be retried")
            self.ledger.lock_team(conn, row["team_id"])
            self.ledger.reserve(conn, row["team_id"], row["team"], now)
            conn.execute(update(submissions).where(submissions.c.id == submission_id).values(
                status=Status.PENDING, counted=True, error=None, scorer_host=self.ctx.host,
                owner_pid=os.getpid(), scorer_pid=None))
        return self._score_and_record(submission_id, row["team"],
                                      self.ctx.comp.root / row["file_path"], row["file_name"])

    # --- scoring and recording ---------------------------------------------------------------

    def score_stored(self, path: Path, file_name: str,
                     submission_id: int | None = None) -> ScoredFile:
        """Score a stored file in a child process; its pid is recorded on the pending
        submission `submission_id` (None when rescoring, which writes nothing before it
        commits)."""
        def started(pid: int) -> None:
            if submission_id is not None:
                with db.write(self.ctx.engine) as conn:
                    conn.execute(update(submissions).where(submissions.c.id == submission_id)
                                 .values(scorer_pid=pid))

        return self.scorer.score(self.ctx.comp, path, file_name, self.tracking.enabled, started)

    def _score_and_record(self, submission_id: int, team: str, path: Path,
                          file_name: str) -> Outcome:
        result = self.score_stored(path, file_name, submission_id)
        with db.write(self.ctx.engine) as conn:
            self.record(conn, submission_id, result, reason="submit")
            row = self._row(conn, submission_id)
            seen = outcome(row, team)
            seen.remaining_today = self.ledger.remaining_today(conn, row["team_id"])
        self.track(dict(row), team, result, "submit")
        return seen

    @staticmethod
    def _row(conn: Connection, submission_id: int) -> RowMapping:
        return conn.execute(select(submissions).where(submissions.c.id == submission_id)
                            ).mappings().one()

    def record(self, conn: Connection, submission_id: int, result: ScoredFile,
               reason: str) -> None:
        """Write a scoring's outcome, its item scores and a history row (in the caller's
        transaction)."""
        now = self.ctx.now()
        conn.execute(update(submissions).where(submissions.c.id == submission_id).values(
            status=result.status, counted=result.status == Status.SCORED, error=result.error,
            public_score=result.public, private_score=result.private,
            scorer_version=result.scorer_version, solution_sha256=result.solution_sha256,
            scored_at=now))
        conn.execute(item_scores.delete().where(item_scores.c.submission_id == submission_id))
        if result.items:
            conn.execute(insert(item_scores), [
                {"submission_id": submission_id, "position": k, "item": item, "usage": usage,
                 "item_values": json.dumps(values)}
                for k, (item, usage, values) in enumerate(result.items)])
        conn.execute(insert(score_history).values(
            submission_id=submission_id, status=result.status, public_score=result.public,
            private_score=result.private, scorer_version=result.scorer_version,
            solution_sha256=result.solution_sha256, recorded_at=now, reason=reason))

    def track(self, row: dict[str, Any], team: str, result: ScoredFile, reason: str) -> None:
        """Log a scored submission to MLflow, after the store has committed it."""
        if result.status != Status.SCORED or not self.tracking.enabled:
            return
        from competition.tracking import runs

        comp = self.ctx.comp
        runs.submission_runs(runs.SubmissionRecord(
            competition=comp.name, task=comp.task.name, submission_id=row["id"],
            team=team, file_sha256=row["file_sha256"],
            scorer_version=result.scorer_version or "",
            solution_sha256=result.solution_sha256 or "", public_score=result.public,
            private_score=result.private, score=result.score, details=result.details,
            rows=result.rows, item_kind=result.item_kind, reason=reason), self.tracking)


def outcome(row: RowMapping, team: str, selected: bool = False) -> Outcome:
    return Outcome(id=row["id"], team=team, status=row["status"],
                   submitted_at=row["submitted_at"], file_name=row["file_name"],
                   public_score=row["public_score"], private_score=row["private_score"],
                   error=row["error"], message=row["message"],
                   duplicate_of=row["duplicate_of"], selected=selected)
