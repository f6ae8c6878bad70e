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

import dataclasses
import json
import unicodedata
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from competition.board import claimed, code_jobs
from competition.board.context import BoardContext, Closed, LimitReached, RuleError
from competition.board.ledger import TEAM_GONE, Ledger
from competition.board.scorer_process import ChildScorer, ScoredFile
from competition.board.status import Status
from competition.board.store import code_runs, db, scores, selections
from competition.board.store import submissions as store
from competition.board.store.db import Connection
from competition.board.store.files import Staged, lock_file, remove_file, stage_file
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
            chosen = set(selections.of_team(conn, team_id))
            rows = store.of_team(conn, team_id)
            runs = code_runs.of_submissions(conn, [row["id"] for row in rows])
        late = self.ctx.rules.is_late
        return [outcome(row, team, row["id"] in chosen, runs.get(row["id"]),
                        late(row["submitted_at"])) for row in rows]

    def outcome_of(self, submission_id: int, team: str) -> Outcome:
        """One submission of `team`, as the team sees it (RuleError if not the team's)."""
        with db.read(self.ctx.engine) as conn:
            team_id = Teams.id_of(conn, team)
            row = store.one_of_team(conn, submission_id, team_id)
            if team_id is None or row is None:
                raise RuleError(f"no submission {submission_id} of team {team!r}")
            seen = outcome(row, team, selections.is_selected(conn, team_id, submission_id),
                           code_runs.of_submission(conn, submission_id),
                           self.ctx.rules.is_late(row["submitted_at"]))
            seen.remaining_today = self.ledger.remaining_today(conn, team_id)
        return seen

    def get(self, submission_id: int) -> dict[str, Any] | None:
        """A submission's row, with its team's name as `team`."""
        with db.read(self.ctx.engine) as conn:
            return store.with_team(conn, submission_id)

    def all(self) -> list[dict[str, Any]]:
        """Every submission with its team (organizer view)."""
        with db.read(self.ctx.engine) as conn:
            return store.overview(conn)

    # --- submitting ------------------------------------------------------------------------

    def submit(self, path: Path, team: str, message: str | None = None,
               baseline: bool = False, queue: bool = False,
               create_team: bool = True) -> Outcome:
        """Keep, validate and score one file for `team` under the rules (a team first seen
        here is created, as an organizers' baseline with `baseline`; without `create_team`,
        as the portal submits for a signed-in team, an unknown team is refused: a team
        merged away or renamed while its upload arrived is not made anew). The accepted submission
        is `queued` for a scoring job (see board.queue). With `queue` its outcome is returned
        at once (a dispatcher scores it); otherwise this process claims the job and scores
        it (board.claimed.score_own), and returns the result."""
        comp = self.ctx.comp
        message = checked_message(message, self.ctx.rules.max_message_chars)
        # Errors name the file as the team sent it (the portal's copy sits in a server
        # temporary folder whose path means nothing to them).
        submission = comp.submission(Path(path), Path(path).name)
        suffix = self.suffix_of(Path(path))
        now = self.ctx.now()
        self.ledger.check_open(now)
        with db.read(self.ctx.engine) as conn:  # early refusals, before the file is read
            known = Teams.id_of(conn, team)  # a look-alike of a team's name is refused
            if known is not None:
                self.ledger.check_uploads(conn, known, team.strip(), now)
            elif not create_team:
                raise Closed(TEAM_GONE)
        staged = stage_file(comp.root, submission)
        try:
            # (Without create_team the team was there above; _admit's lock finds it gone
            # where it was merged away since.)
            team_id = self.teams.ensure(team, now, baseline) if known is None else known
            team = team.strip()  # the team's name exactly (ensure refuses look-alikes)
            submission_id, duplicate = self._admit(staged, suffix, Path(path).name, team_id,
                                                   team, message, now)
            # Kept only now that its row is committed (see store.files).
            try:
                staged.keep(suffix)
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

    def suffix_of(self, path: Path) -> str:
        """The suffix the stored copy of this upload gets: the task's for a prediction file,
        code_jobs.CODE_SUFFIX for code (a zip of an entry folder); refused (RuleError) where
        the competition does not take its kind."""
        from competition.sandbox.unpack import is_entry_zip

        comp = self.ctx.comp
        code = is_entry_zip(path)
        if code and not comp.takes_code:
            raise RuleError(f"{path.name} is code (a zip of an entry folder); this "
                            "competition takes prediction files")
        if not code and not comp.takes_files:
            raise RuleError(f"{path.name} is not code: this competition takes a zip of an "
                            "entry folder with entry.py and config.yaml (`competition pack "
                            "FOLDER --out entry.zip`), not prediction files")
        return code_jobs.CODE_SUFFIX if code else comp.task.submission_suffix

    def _outcome_now(self, submission_id: int, team: str) -> Outcome:
        with db.read(self.ctx.engine) as conn:
            row = store.row(conn, submission_id)
            seen = outcome(row, team, run=code_runs.of_submission(conn, submission_id),
                           late=self.ctx.rules.is_late(row["submitted_at"]))
            seen.remaining_today = self.ledger.remaining_today(conn, row["team_id"])
        return seen

    def _admit(self, staged: Staged, suffix: str, file_name: str, team_id: int, team: str,
               message: str | None, now: datetime) -> tuple[int, Outcome | None]:
        """In one transaction with the team locked: the hourly upload limit checked and the
        upload counted, then a duplicate recorded or a slot of the day taken for a `queued`
        row (scored by a job: a dispatcher's, or this process's). Returns the row's id
        and, for a duplicate, its outcome. An upload refused by the daily limit is counted
        all the same (committed) before the refusal is raised."""
        rel = staged.rel(suffix)
        refused: LimitReached | None = None
        with db.write(self.ctx.engine) as conn:
            self.ledger.lock_team(conn, team_id)
            self.ledger.check_uploads(conn, team_id, team, now)
            lock_file(conn, rel)
            values = dict(team_id=team_id, submitted_at=now, file_name=file_name,
                          file_sha256=staged.sha256, file_path=rel, message=message,
                          day_limit=self.ctx.rules.daily_limit)
            earlier = store.earliest_scored(conn, team_id, staged.sha256)
            if earlier is not None:
                earlier_id, public, private = earlier
                key = store.insert_submission(
                    conn, **values, status=Status.DUPLICATE, counted=False,
                    duplicate_of=earlier_id,
                    error=f"same file as submission {earlier_id}: not scored again")
                self.ledger.record_upload(conn, team_id, now, key)
                result = outcome(store.row(conn, key), team,
                                 late=self.ctx.rules.is_late(now))
                result.public_score, result.private_score = public, private
                result.remaining_today = self.ledger.remaining_today(conn, team_id)
                return key, result
            try:
                self.ledger.reserve(conn, team_id, team, now)
            except LimitReached as e:
                refused = e
                self.ledger.record_upload(conn, team_id, now, None)
            else:
                key = store.insert_submission(conn, **values, status=Status.QUEUED,
                                              counted=True, scorer_host=self.ctx.host)
                self.ledger.record_upload(conn, team_id, now, key)
                return key, None
        assert refused is not None
        raise refused

    def _not_kept(self, submission_id: int, error: OSError) -> None:
        """A submission whose file could not be kept: failed and uncounted, not queued (a
        job that claimed it meanwhile loses its claim and records nothing)."""
        with db.write(self.ctx.engine) as conn:
            store.fail_waiting(conn, submission_id,
                               f"the file could not be kept ({error.strerror or error}); "
                               "submit it again")

    def retry(self, submission_id: int, team: str | None = None) -> Outcome:
        """Score a failed submission again, as a job of the queue scored by this process: it
        takes a slot again, of the UTC day it was made and under the limit in force then (a
        submission counts on its own day), and its attempts start again from none. After the
        deadline only a late submission is retried (under the rule `late_submissions`)."""
        now = self.ctx.now()
        with db.write(self.ctx.engine) as conn:
            row = store.with_team(conn, submission_id)
            if row is None or (team is not None and row["team"].strip() != team.strip()):
                raise RuleError(f"no submission {submission_id}"
                                + (f" of team {team!r}" if team else ""))
            self.ledger.check_open(now, made_at=row["submitted_at"])
            if row["status"] != Status.FAILED:
                raise RuleError(f"submission {submission_id} is {row['status']}; only failed "
                                "submissions can be retried")
            if row["counted"]:  # a code submission whose entry failed: it would again
                raise RuleError(f"submission {submission_id} failed by its entry's doing "
                                f"({row['error']}); submit a corrected entry instead")
            self.ledger.lock_team(conn, row["team_id"])
            self.ledger.reserve(conn, row["team_id"], row["team"], now,
                                made_at=row["submitted_at"], limit=row["day_limit"])
            store.requeue(conn, submission_id)
        claimed.score_own(self, submission_id)
        return self._outcome_now(submission_id, row["team"])

    # --- scoring and recording ---------------------------------------------------------------

    def score_stored(self, path: Path, file_name: str,
                     started: Callable[[int], None] | None = None,
                     submission_id: int | None = None) -> ScoredFile:
        """Score a stored file in a limited child process (`started(pid)` once it runs);
        writes nothing to the store. A code submission's zip is run first (code_jobs; its
        output goes to the run's folder, keyed by `submission_id`) and what it wrote is
        scored."""
        def score(file: Path, name: str) -> ScoredFile:
            return self.scorer.score(self.ctx.comp, file, name,
                                     details=self.tracking.enabled, started=started)

        if not code_jobs.is_code_file(path):
            return score(path, file_name)
        key = str(submission_id) if submission_id is not None else path.name.split(".")[0]
        return code_jobs.run_and_score(self.ctx.comp, path, key, score, started)

    def rescore_stored(self, row: dict[str, Any]) -> ScoredFile | None:
        """Score a stored submission again (None: nothing kept to score): a file as it
        is; code by the output its run wrote (its entry is not run again)."""
        path = self.ctx.comp.root / row["file_path"]
        if not code_jobs.is_code_file(path):
            return self.score_stored(path, row["file_name"]) if path.is_file() else None
        with db.read(self.ctx.engine) as conn:
            run = code_runs.of_submission(conn, row["id"])
        output = code_jobs.output_of(self.ctx.comp, run)
        if output is None:
            return None
        result = self.scorer.score(self.ctx.comp, output, output.name,
                                   details=self.tracking.enabled)
        if result.status == Status.INVALID:
            return code_jobs.participants(f"invalid output: {result.error}", run)
        return dataclasses.replace(result, run=run)

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
            if store.not_invalid_using(conn, rel):
                return
            store.mark_file_deleted(conn, rel, self.ctx.now())
            # Inside the transaction and its lock: a submission of the same file committed
            # after this keeps a copy of its own (store.files).
            remove_file(self.ctx.comp.root, rel)

    def record(self, conn: Connection, submission_id: int, result: ScoredFile,
               reason: str) -> int:
        """Write a scoring's outcome, its item scores and a history row (in the caller's
        transaction); returns the history row's id (the event MLflow logs it under). A scored
        submission counts toward the limit of its day: the caller has reserved its slot. A
        scored result is marked as not yet logged to MLflow until `track` has logged it, and
        what logging it needs is kept with it (replacing an earlier result's)."""
        scored = result.status == Status.SCORED
        payload = json.dumps(result.tracking_payload()) \
            if scored and self.tracking.enabled else None
        if result.run is not None:
            code_runs.record(conn, submission_id, result.run)
        counted = scored if result.counted is None else result.counted
        return scores.record(conn, submission_id, stored_result(result), counted=counted,
                             items=result.items, payload=payload, now=self.ctx.now(),
                             reason=reason)

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
            competition=comp.key, task=comp.task.name, submission_id=row["id"],
            team=team, file_sha256=row["file_sha256"],
            scorer_version=result.scorer_version or "",
            solution_sha256=result.solution_sha256 or "", public_score=result.public,
            private_score=result.private, score=result.score, details=result.details,
            rows=result.rows, item_kind=result.item_kind, reason=reason, event=event),
            self.tracking)
        if len(logged) == runs.audiences(self.tracking):
            with db.write(self.ctx.engine) as conn:
                scores.tracked(conn, row["id"])

    def track_pending(self, submission_id: int) -> bool:
        """Log a scored submission still marked pending (its job died after committing, or
        MLflow was unreachable) from what was kept with its result, never scoring it again,
        under its latest event. Returns whether anything was pending."""
        row = self.get(submission_id)
        if row is None or not row["tracking_pending"] or row["status"] != Status.SCORED:
            return False
        with db.read(self.ctx.engine) as conn:
            event, reason = scores.latest_event(conn, submission_id)
            kept = scores.tracking_payload(conn, submission_id)
        self.track(row, row["team"], recorded_result(row, kept), reason, event)
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


def stored_result(result: ScoredFile) -> scores.Result:
    """What the store keeps of a scoring's result in the submission's row and history."""
    return scores.Result(result.status, result.public, result.private, result.error,
                         result.scorer_version, result.solution_sha256)


def outcome(row: Mapping[str, Any], team: str, selected: bool = False,
            run: Mapping[str, Any] | None = None, late: bool = False) -> Outcome:
    """A submission as its team sees it (with its code run's figures and output, if any;
    never the path of the file the run wrote; `late`: made at or after the deadline)."""
    seen = None if run is None else {k: v for k, v in run.items()
                                     if k not in ("submission_id", "output_path")}
    return Outcome(id=row["id"], team=team, status=row["status"],
                   submitted_at=row["submitted_at"], file_name=row["file_name"],
                   public_score=row["public_score"], private_score=row["private_score"],
                   error=row["error"], message=row["message"],
                   duplicate_of=row["duplicate_of"], selected=selected, run=seen, late=late)
