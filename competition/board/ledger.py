"""The daily limit and the opening hours, checked and a slot taken in one transaction; and
the reconciliation of submissions whose scoring was interrupted."""

from __future__ import annotations

import os
from datetime import datetime

from sqlalchemy import Connection, and_, func, select, update

from competition.board.context import BoardContext, Closed, LimitReached
from competition.board.rules import utc_day
from competition.board.status import COUNTED, Status
from competition.board.store import db
from competition.board.store.schema import submissions, teams


class Ledger:
    def __init__(self, ctx: BoardContext):
        self.ctx = ctx

    def check_open(self, now: datetime) -> None:
        rules = self.ctx.rules
        if rules.start is not None and now < rules.start:
            raise Closed(f"the competition opens at {rules.start.isoformat()}Z")
        if rules.deadline is not None and now >= rules.deadline:
            raise Closed(f"the competition closed at {rules.deadline.isoformat()}Z; "
                         "no more submissions")

    @staticmethod
    def lock_team(conn: Connection, team_id: int) -> None:
        """Serialise one team's reservations on SQL servers (SQLite's write lock already
        serialises every writer)."""
        if conn.dialect.name != "sqlite":
            conn.execute(select(teams.c.id).where(teams.c.id == team_id).with_for_update())

    @staticmethod
    def used_today(conn: Connection, team_id: int, now: datetime) -> int:
        start, end = utc_day(now)
        used: int = conn.execute(select(func.count()).select_from(submissions).where(and_(
            submissions.c.team_id == team_id, submissions.c.counted.is_(True),
            submissions.c.status.in_(COUNTED),
            submissions.c.submitted_at >= start, submissions.c.submitted_at < end))).scalar_one()
        return used

    def remaining_today(self, conn: Connection, team_id: int) -> int:
        return self.ctx.rules.daily_limit - self.used_today(conn, team_id, self.ctx.now())

    def reserve(self, conn: Connection, team_id: int, team: str, now: datetime) -> None:
        """Take a slot of the team's day (inside the caller's transaction, the team locked),
        or refuse: the check and the taking cannot be separated by another submission."""
        limit = self.ctx.rules.daily_limit
        if self.used_today(conn, team_id, now) >= limit:
            reset = utc_day(now)[1]
            raise LimitReached(
                f"team {team!r} has used its {limit} submissions of today (UTC); the limit "
                f"resets at {reset.isoformat()}Z (invalid and failed submissions do not count)")

    def reconcile(self) -> int:
        """Mark `pending` submissions as failed (retryable) once both the process that
        submitted them and its scorer are gone: nobody is left to record their outcome."""
        with db.read(self.ctx.engine) as conn:
            pending = conn.execute(select(submissions.c.id, submissions.c.owner_pid,
                                          submissions.c.scorer_pid, submissions.c.scorer_host)
                                   .where(submissions.c.status == Status.PENDING)).all()
        dead = [row.id for row in pending if row.scorer_host == self.ctx.host
                and not _alive(row.owner_pid) and not _alive(row.scorer_pid)]
        if dead:
            with db.write(self.ctx.engine) as conn:
                conn.execute(update(submissions).where(and_(
                    submissions.c.id.in_(dead), submissions.c.status == Status.PENDING)).values(
                    status=Status.FAILED, counted=False,
                    error="scoring was interrupted; the submission can be retried"))
        return len(dead)


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
