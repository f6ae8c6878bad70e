"""The daily limit, the hourly upload limit and the opening hours, each checked and taken in
one transaction with the team locked. (An interrupted scoring is the queue's to take back, by
its lease: see board.queue.)"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from competition.board.context import (
    BoardContext,
    Closed,
    LimitReached,
    RuleError,
    TooManyUploads,
)
from competition.board.rules import utc_day
from competition.board.store import db, submissions, teams, uploads
from competition.board.store.db import Connection
from competition.board.teams import Teams

HOUR = timedelta(hours=1)
TEAM_GONE = ("your team no longer exists (merged into another, or removed): sign in again to "
             "act as your team now")


class Ledger:
    def __init__(self, ctx: BoardContext):
        self.ctx = ctx

    def check_open(self, now: datetime, made_at: datetime | None = None) -> None:
        """Refuse outside the opening hours. After the deadline, under the rule
        `late_submissions`, a submission is taken as a late one; `made_at` (a retried
        submission's time): only a late one is retried then (an on-time one would reach the
        boards after the deadline)."""
        rules = self.ctx.rules
        if rules.start is not None and now < rules.start:
            raise Closed(f"the competition opens at {rules.start.isoformat()}Z")
        if rules.deadline is not None and now >= rules.deadline:
            if rules.is_late(now if made_at is None else made_at):
                return
            raise Closed(f"the competition closed at {rules.deadline.isoformat()}Z; "
                         "no more submissions")

    @staticmethod
    def lock_team(conn: Connection, team_id: int) -> None:
        """Serialise one team's reservations on SQL servers (SQLite's write lock already
        serialises every writer); Closed where the team is gone since its id was read (a
        student merged it into another team meanwhile)."""
        if not teams.lock(conn, team_id):
            raise Closed(TEAM_GONE)

    @staticmethod
    def used_today(conn: Connection, team_id: int, now: datetime) -> int:
        """The team's counted submissions of the UTC day containing `now` (a submission
        counts on the day it was made, whenever it was scored)."""
        start, end = utc_day(now)
        return submissions.counted_between(conn, team_id, start, end)

    def remaining_today(self, conn: Connection, team_id: int) -> int:
        return self.ctx.rules.daily_limit - self.used_today(conn, team_id, self.ctx.now())

    def reserve(self, conn: Connection, team_id: int, team: str, now: datetime,
                made_at: datetime | None = None, limit: int | None = None) -> None:
        """Take a slot of the team's day (inside the caller's transaction, the team locked),
        or refuse: the check and the taking cannot be separated by another submission.
        `made_at` (a retried submission's time) and `limit` (the one in force then): the
        slot is of that day, under that limit."""
        limit = self.ctx.rules.daily_limit if limit is None else limit
        day = now if made_at is None else made_at
        if self.used_today(conn, team_id, day) < limit:
            return
        start, reset = utc_day(day)
        if utc_day(now)[0] == start:
            raise LimitReached(
                f"team {team!r} has used its {limit} submissions of today (UTC); the limit "
                f"resets at {reset.isoformat()}Z (invalid and failed submissions do not count)")
        raise LimitReached(
            f"team {team!r} has used its {limit} submissions of {start.date().isoformat()} "
            "(UTC), the day this submission was made: a submission counts on its own day")

    def check_uploads(self, conn: Connection, team_id: int, team: str, now: datetime) -> None:
        """Refuse an upload past the team's limit of uploads in the last hour (a sliding
        hour: each upload stops counting an hour after it was made)."""
        limit = self.ctx.rules.uploads_per_hour
        times = uploads.times_since(conn, team_id, now - HOUR)
        if len(times) < limit:
            return
        # Once the oldest uploads but (limit - 1) have left the window, one more fits.
        retry_at = times[len(times) - limit] + HOUR
        wait = max(1, math.ceil((retry_at - now).total_seconds()))
        raise TooManyUploads(
            f"team {team!r} has made {len(times)} uploads in the last hour, the limit is "
            f"{limit} (every upload counts, whatever became of it); the next upload is "
            f"possible at {_whole_second(retry_at).isoformat()}Z (in {wait} s)",
            retry_at, wait)

    def refusal_now(self, team: str) -> RuleError | None:
        """What would refuse an upload of `team` right now (the opening hours, the hourly
        upload limit, the daily limit), read without taking anything: the portal asks before
        it reads an upload's body. The check that counts is still the one in the transaction
        that takes the slot (see Submissions.submit): this one only spares the disk."""
        now = self.ctx.now()
        try:
            self.check_open(now)
            with db.read(self.ctx.engine) as conn:
                team_id = Teams.id_of(conn, team)
                if team_id is None:  # a team first seen now is over no limit
                    return None
                self.check_uploads(conn, team_id, team.strip(), now)
                self.reserve(conn, team_id, team.strip(), now)  # reads only: refuses or not
        except RuleError as e:
            return e
        return None

    @staticmethod
    def record_upload(conn: Connection, team_id: int, now: datetime,
                      submission_id: int | None) -> None:
        """Count an upload (inside the transaction that checked the limit, the team
        locked); `submission_id` None for one refused by the daily limit."""
        uploads.add(conn, team_id, now, submission_id)


def _whole_second(t: datetime) -> datetime:
    """`t` rounded up to a whole second (a time shown as "possible at" is never early)."""
    return t if not t.microsecond else t.replace(microsecond=0) + timedelta(seconds=1)
