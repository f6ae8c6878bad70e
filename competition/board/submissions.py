"""Submitting and retrying: the rules checked, a file kept, a slot taken, the file scored, the
outcome recorded.

Cheap refusals come first (the message's length, the team's name, the opening hours, the
hourly upload limit), before the file is read. The upload is then staged (copied and hashed in
chunks), and one transaction with the team locked checks the hourly upload limit and the daily
limit again, counts the upload (whatever becomes of it) and takes a slot. Only an accepted
upload's copy is kept, as an immutable content-addressed file; a refused one's is discarded.
Every accepted submission is `queued`, whatever its door, and scored as a job of the queue
(board.queue, board.claimed): by a dispatcher's worker, or by this process for a command
without a server, which claims its own job. Invalid and failed submissions give their slot
back; an upload that ends invalid also gives its file back (see `_drop_invalid_file`). A
scorer that dies (even by SIGKILL) leaves the submission `failed` and retryable; a submitting
process that dies leaves its job claimed until the lease runs out, when any claim on any host
takes it back (a serve process, `competition jobs`).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update
from sqlalchemy.engine import RowMapping

from competition.board import claimed
from competition.board.context import BoardContext, LimitReached, RuleError
from competition.board.ledger import Ledger
from competition.board.scorer_process import ChildScorer, ScoredFile
from competition.board.status import Status
from competition.board.store import db
from competition.board.store.files import Staged, lock_file, remove_file, stage_file
from competition.board.store.schema import (
    item_scores,
    score_history,
    selections,
    submissions,
    tracking_payloads,
)
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
        with db.read(self.ctx.engine) as conn:
            team_id = Teams.id_of(conn, team)
            if team_id is None:
                raise RuleError(f"no team {team!r} in this competition")
            chosen: set[int] = set(conn.execute(select(selections.c.submission_id)
                                                .where(selections.c.team_id == team_id)).scalars())
            rows = conn.execute(select(submissions).where(submissions.c.team_id == team_id)
                                .order_by(submissions.c.id)).mappings().all()
        return [outcome(row, team, row["id"] in chosen) for row in rows]

    def outcome_of(self, submission_id: int, team: str) -> Outcome:
        """One submission of `team`, as the team sees it (RuleError if not the team's)."""
        with db.read(self.ctx.engine) as conn:
            team_id = Teams.id_of(conn, team)
            row = conn.execute(select(submissions).where(and_(
                submissions.c.id == submission_id, submissions.c.team_id == team_id))
            ).mappings().first()
            if team_id is None or row is None:
                raise RuleError(f"no submission {submission_id} of team {team!r}")
            selected = conn.execute(select(selections.c.submission_id).where(and_(
                selections.c.team_id == team_id,
                selections.c.submission_id == submission_id))).first() is not None
            seen = outcome(row, team, selected)
            seen.remaining_today = self.ledger.remaining_today(conn, team_id)
        return seen

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
               baseline: bool = False, queue: bool = False) -> Outcome:
        """Keep, validate and score one file for `team` under the rules (a team first seen
        here is created; as an organizers' baseline with `baseline`). The accepted submission
        is `queued` for a scoring job (see board.queue). With `queue` its outcome is returned
        at once (a dispatcher scores it); otherwise this process claims the job and scores
        it (board.claimed.score_own), and returns the result."""
        comp = self.ctx.comp
        message = checked_message(message, self.ctx.rules.max_message_chars)
        submission = comp.submission(Path(path))
        now = self.ctx.now()
        self.ledger.check_open(now)
        with db.read(self.ctx.engine) as conn:  # early refusals, before the file is read
            known = Teams.id_of(conn, team)  # a look-alike of a team's name is refused
            if known is not None:
                self.ledger.check_uploads(conn, known, team.strip(), now)
        staged = stage_file(comp.root, submission)
        try:
            team_id = self.teams.ensure(team, now, baseline)
            team = team.strip()  # the team's name exactly (ensure refuses look-alikes)
            submission_id, duplicate = self._admit(staged, Path(path).name, team_id, team,
                                                   message, now)
            # Kept only now that its row is committed (see store.files).
            try:
                staged.keep(comp.task.submission_suffix)
            except OSError as e:  # e.g. a full disk: no queued row may wait for it forever
                self._not_kept(submission_id, e)
                raise
        finally:
            staged.discard()
        if duplicate is not None:
            return duplicate
        if not queue:
            claimed.score_own(self, submission_id)
        return self._outcome_now(submission_id, team)

    def _outcome_now(self, submission_id: int, team: str) -> Outcome:
        with db.read(self.ctx.engine) as conn:
            row = self._row(conn, submission_id)
            seen = outcome(row, team)
            seen.remaining_today = self.ledger.remaining_today(conn, row["team_id"])
        return seen

    def _admit(self, staged: Staged, file_name: str, team_id: int, team: str,
               message: str | None, now: datetime) -> tuple[int, Outcome | None]:
        """In one transaction with the team locked: the hourly upload limit checked and the
        upload counted, then a duplicate recorded or a slot of the day taken for a `queued`
        row (scored by a job: a dispatcher's, or this process's). Returns the row's id
        and, for a duplicate, its outcome. An upload refused by the daily limit is counted
        all the same (committed) before the refusal is raised."""
        rel = staged.rel(self.ctx.comp.task.submission_suffix)
        refused: LimitReached | None = None
        with db.write(self.ctx.engine) as conn:
            self.ledger.lock_team(conn, team_id)
            self.ledger.check_uploads(conn, team_id, team, now)
            lock_file(conn, rel)
            values = dict(team_id=team_id, submitted_at=now, file_name=file_name,
                          file_sha256=staged.sha256, file_path=rel, message=message,
                          day_limit=self.ctx.rules.daily_limit)
            earlier = conn.execute(
                select(submissions.c.id, submissions.c.public_score,
                       submissions.c.private_score).where(and_(
                        submissions.c.team_id == team_id,
                        submissions.c.file_sha256 == staged.sha256,
                        submissions.c.status == Status.SCORED))
                .order_by(submissions.c.id).limit(1)).first()
            if earlier is not None:
                key = conn.execute(insert(submissions).values(
                    **values, status=Status.DUPLICATE, counted=False, duplicate_of=earlier.id,
                    error=f"same file as submission {earlier.id}: not scored again")
                ).inserted_primary_key
                assert key is not None
                self.ledger.record_upload(conn, team_id, now, int(key[0]))
                result = outcome(self._row(conn, int(key[0])), team)
                result.public_score, result.private_score = earlier[1], earlier[2]
                result.remaining_today = self.ledger.remaining_today(conn, team_id)
                return int(key[0]), result
            try:
                self.ledger.reserve(conn, team_id, team, now)
            except LimitReached as e:
                refused = e
                self.ledger.record_upload(conn, team_id, now, None)
            else:
                key = conn.execute(insert(submissions).values(
                    **values, status=Status.QUEUED, counted=True, scorer_host=self.ctx.host)
                ).inserted_primary_key
                assert key is not None
                self.ledger.record_upload(conn, team_id, now, int(key[0]))
                return int(key[0]), None
        assert refused is not None
        raise refused

    def _not_kept(self, submission_id: int, error: OSError) -> None:
        """A submission whose file could not be kept: failed and uncounted, not queued (a
        job that claimed it meanwhile loses its claim and records nothing)."""
        with db.write(self.ctx.engine) as conn:
            conn.execute(update(submissions).where(and_(
                submissions.c.id == submission_id,
                submissions.c.status.in_((Status.QUEUED, Status.SCORING))))
                .values(status=Status.FAILED, counted=False, claim_token=None,
                        lease_until=None,
                        error=f"the file could not be kept ({error.strerror or error}); "
                              "submit it again"))

    def retry(self, submission_id: int, team: str | None = None) -> Outcome:
        """Score a failed submission again, as a job of the queue scored by this process: it
        takes a slot again, of the UTC day it was made and under the limit in force then (a
        submission counts on its own day), and its attempts start again from none."""
        now = self.ctx.now()
        self.ledger.check_open(now)
        with db.write(self.ctx.engine) as conn:
            row = conn.execute(select(submissions, teams_table.c.name.label("team"))
                               .join(teams_table, teams_table.c.id == submissions.c.team_id)
                               .where(submissions.c.id == submission_id)).mappings().first()
            if row is None or (team is not None and row["team"].strip() != team.strip()):
                raise RuleError(f"no submission {submission_id}"
                                + (f" of team {team!r}" if team else ""))
            if row["status"] != Status.FAILED:
                raise RuleError(f"submission {submission_id} is {row['status']}; only failed "
                                "submissions can be retried")
            self.ledger.lock_team(conn, row["team_id"])
            self.ledger.reserve(conn, row["team_id"], row["team"], now,
                                made_at=row["submitted_at"], limit=row["day_limit"])
            conn.execute(update(submissions).where(submissions.c.id == submission_id).values(
                status=Status.QUEUED, counted=True, error=None, claim_token=None,
                claimed_by=None, lease_until=None, attempts=0))
        claimed.score_own(self, submission_id)
        return self._outcome_now(submission_id, row["team"])

    # --- scoring and recording ---------------------------------------------------------------

    def score_stored(self, path: Path, file_name: str,
                     started: Callable[[int], None] | None = None) -> ScoredFile:
        """Score a stored file in a limited child process (`started(pid)` once it runs);
        writes nothing."""
        return self.scorer.score(self.ctx.comp, path, file_name, self.tracking.enabled, started)

    def after_record(self, row: dict[str, Any], team: str, result: ScoredFile,
                     event: int | None = None) -> None:
        """What follows a committed result: an invalid upload's file given back, the
        submission logged to MLflow."""
        if result.status == Status.INVALID:
            self._drop_invalid_file(row["file_path"])
        self.track(row, team, result, "submit", event)

    def _drop_invalid_file(self, rel: str) -> None:
        """Remove the file of an upload that ended invalid, unless a submission that is not
        invalid (pending, scored, failed, duplicate) shares it; the rows keep their errors.

        Removed rather than kept within a per-team quota: an invalid file never ranks and is
        never scored again (a retry is for failed submissions), a quota would still let each
        team hold quota x max_submission_mb of refused bytes, and what a team needs to fix
        it (the error naming file, line or image) stays in its row."""
        with db.write(self.ctx.engine) as conn:
            if not lock_file(conn, rel):
                return  # no lock to be had on this server: keep rather than risk a loss
            kept = conn.execute(select(func.count()).select_from(submissions).where(and_(
                submissions.c.file_path == rel,
                submissions.c.status != Status.INVALID))).scalar_one()
            if kept:
                return
            conn.execute(update(submissions).where(and_(
                submissions.c.file_path == rel, submissions.c.file_deleted_at.is_(None)))
                .values(file_deleted_at=self.ctx.now()))
            # Inside the transaction and its lock: a submission of the same file committed
            # after this keeps a copy of its own (store.files).
            remove_file(self.ctx.comp.root, rel)

    @staticmethod
    def _row(conn: Connection, submission_id: int) -> RowMapping:
        return conn.execute(select(submissions).where(submissions.c.id == submission_id)
                            ).mappings().one()

    def record(self, conn: Connection, submission_id: int, result: ScoredFile,
               reason: str) -> int:
        """Write a scoring's outcome, its item scores and a history row (in the caller's
        transaction); returns the history row's id (the event MLflow logs it under). A scored
        submission counts toward the limit of its day: the caller has reserved its slot. A
        scored result is marked as not yet logged to MLflow until `track` has logged it."""
        now = self.ctx.now()
        conn.execute(update(submissions).where(submissions.c.id == submission_id).values(
            status=result.status, counted=result.status == Status.SCORED, error=result.error,
            public_score=result.public, private_score=result.private,
            scorer_version=result.scorer_version, solution_sha256=result.solution_sha256,
            scored_at=now,
            tracking_pending=result.status == Status.SCORED and self.tracking.enabled))
        conn.execute(item_scores.delete().where(item_scores.c.submission_id == submission_id))
        if result.items:
            conn.execute(insert(item_scores), [
                {"submission_id": submission_id, "position": k, "item": item, "usage": usage,
                 "item_values": json.dumps(values)}
                for k, (item, usage, values) in enumerate(result.items)])
        self._keep_tracking_payload(conn, submission_id, result)
        key = conn.execute(insert(score_history).values(
            submission_id=submission_id, status=result.status, public_score=result.public,
            private_score=result.private, scorer_version=result.scorer_version,
            solution_sha256=result.solution_sha256, recorded_at=now, reason=reason)
        ).inserted_primary_key
        assert key is not None
        return int(key[0])

    def _keep_tracking_payload(self, conn: Connection, submission_id: int,
                               result: ScoredFile) -> None:
        """Keep what logging `result` needs while it is owed (replacing an earlier result's)."""
        conn.execute(tracking_payloads.delete()
                     .where(tracking_payloads.c.submission_id == submission_id))
        if result.status == Status.SCORED and self.tracking.enabled:
            conn.execute(insert(tracking_payloads).values(
                submission_id=submission_id, payload=json.dumps(result.tracking_payload())))

    def track(self, row: dict[str, Any], team: str, result: ScoredFile, reason: str,
              event: int | None = None) -> None:
        """Log a scored submission to MLflow, after the store has committed it, then clear
        its pending mark (left set when a store could not be reached: `track_pending`
        retries it)."""
        if result.status != Status.SCORED or not self.tracking.enabled:
            return
        from competition.tracking import runs

        comp = self.ctx.comp
        logged = runs.submission_runs(runs.SubmissionRecord(
            competition=comp.name, task=comp.task.name, submission_id=row["id"],
            team=team, file_sha256=row["file_sha256"],
            scorer_version=result.scorer_version or "",
            solution_sha256=result.solution_sha256 or "", public_score=result.public,
            private_score=result.private, score=result.score, details=result.details,
            rows=result.rows, item_kind=result.item_kind, reason=reason, event=event),
            self.tracking)
        if len(logged) == runs.audiences(self.tracking):
            with db.write(self.ctx.engine) as conn:
                conn.execute(update(submissions).where(submissions.c.id == row["id"])
                             .values(tracking_pending=False))
                conn.execute(tracking_payloads.delete()
                             .where(tracking_payloads.c.submission_id == row["id"]))

    def track_pending(self, submission_id: int) -> bool:
        """Log a scored submission still marked pending (its job died after committing, or
        MLflow was unreachable) from what was kept with its result, never scoring it again,
        under its latest event. Returns whether anything was pending."""
        row = self.get(submission_id)
        if row is None or not row["tracking_pending"] or row["status"] != Status.SCORED:
            return False
        with db.read(self.ctx.engine) as conn:
            latest = conn.execute(
                select(score_history.c.id, score_history.c.reason)
                .where(score_history.c.submission_id == submission_id)
                .order_by(score_history.c.id.desc()).limit(1)).one()
            kept = conn.execute(select(tracking_payloads.c.payload).where(
                tracking_payloads.c.submission_id == submission_id)).scalar_one_or_none()
        self.track(row, row["team"], recorded_result(row, kept), str(latest.reason),
                   int(latest.id))
        return True


def recorded_result(row: dict[str, Any], payload: str | None) -> ScoredFile:
    """A scored submission's result as its row and kept tracking payload tell it. Without a
    payload (recorded before payloads were kept) it has its scores, not its details."""
    kept = json.loads(payload) if payload is not None else {}
    return ScoredFile(Status.SCORED, public=row["public_score"],
                      private=row["private_score"], score=kept.get("score"),
                      details=kept.get("details", {}), rows=kept.get("rows", []),
                      item_kind=kept.get("item_kind", "item"),
                      scorer_version=row["scorer_version"],
                      solution_sha256=row["solution_sha256"])


def checked_message(message: str | None, limit: int) -> str | None:
    """The submission's note within its limit and free of control characters (line breaks
    and tabs aside), or a RuleError before anything is read or stored."""
    if message is None or not message.strip():
        return None
    if len(message) > limit:
        raise RuleError(f"the message is {len(message)} characters long; at most {limit} are "
                        "allowed")
    for k, char in enumerate(message):
        if char not in "\t\n\r" and unicodedata.category(char) in ("Cc", "Cs"):
            raise RuleError(f"the message contains a control character (U+{ord(char):04X}) "
                            f"at position {k + 1}")
    return message


def outcome(row: RowMapping, team: str, selected: bool = False) -> Outcome:
    return Outcome(id=row["id"], team=team, status=row["status"],
                   submitted_at=row["submitted_at"], file_name=row["file_name"],
                   public_score=row["public_score"], private_score=row["private_score"],
                   error=row["error"], message=row["message"],
                   duplicate_of=row["duplicate_of"], selected=selected)
