"""The scoring queue in the store: jobs claimed, leased and recorded exactly once.

A submission accepted by the portal is `queued` in the same transaction that takes its slot.
A dispatcher claims queued jobs (`scoring`, a fresh claim token, a lease), hands each to a
worker, and renews the leases of the jobs it still runs. A job records its result only while
its claim holds (`record_claimed`): a late or duplicated job whose claim was taken over finds
the token changed and records nothing, so every submission is recorded once. A claim whose
lease ran out (its dispatcher died) is taken back to the queue by any dispatcher.

On PostgreSQL, claims skip rows other dispatchers have locked (`FOR UPDATE SKIP LOCKED`); on
SQLite the database's write lock serialises them.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, and_, or_, select, update

from competition.board.context import BoardContext
from competition.board.scorer_process import ScoredFile
from competition.board.status import Status
from competition.board.store import db
from competition.board.store.schema import submissions

DEFAULT_LEASE_SECONDS = 60.0


@dataclass(frozen=True)
class Claim:
    submission_id: int
    token: str
    file_path: str
    file_name: str
    attempts: int


class Queue:
    def __init__(self, ctx: BoardContext, holder: str,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS):
        """`holder` names the dispatcher (e.g. host:pid of a serve process)."""
        self.ctx, self.holder, self.lease = ctx, holder, dt.timedelta(seconds=lease_seconds)

    def claim(self, limit: int) -> list[Claim]:
        """Up to `limit` jobs, oldest first: queued ones, and scoring ones whose lease ran
        out (their dispatcher is gone)."""
        now = self.ctx.now()
        claimable = or_(submissions.c.status == Status.QUEUED,
                        and_(submissions.c.status == Status.SCORING,
                             submissions.c.lease_until < now))
        with db.write(self.ctx.engine) as conn:
            query = (select(submissions.c.id, submissions.c.file_path,
                            submissions.c.file_name, submissions.c.attempts)
                     .where(claimable).order_by(submissions.c.id).limit(limit))
            if conn.dialect.name != "sqlite":
                query = query.with_for_update(skip_locked=True)
            rows = conn.execute(query).all()
            claims = []
            for row in rows:
                token = secrets.token_hex(16)
                conn.execute(update(submissions).where(submissions.c.id == row.id).values(
                    status=Status.SCORING, claim_token=token, claimed_by=self.holder,
                    lease_until=now + self.lease, attempts=row.attempts + 1))
                claims.append(Claim(row.id, token, row.file_path, row.file_name,
                                    row.attempts + 1))
        return claims

    def renew(self, claims: list[Claim]) -> list[Claim]:
        """Extend the leases of jobs still running; returns those whose claim was lost."""
        lost = []
        until = self.ctx.now() + self.lease
        with db.write(self.ctx.engine) as conn:
            for claim in claims:
                if not _holds(conn, claim, values={"lease_until": until}):
                    lost.append(claim)
        return lost

    def take_back_from_dead_holders(self) -> int:
        """Queue again the jobs claimed by dispatchers of this host that are gone (a serve
        process restarted), without waiting for their leases to run out."""
        from competition.board.ledger import _alive

        host = self.holder.rsplit(":", 1)[0]
        with db.write(self.ctx.engine) as conn:
            rows = conn.execute(select(submissions.c.id, submissions.c.claimed_by).where(
                and_(submissions.c.status == Status.SCORING,
                     submissions.c.claimed_by.like(f"{host}:%")))).all()
            dead = [row.id for row in rows
                    if row.claimed_by != self.holder and
                    not _alive(int(row.claimed_by.rsplit(":", 1)[1]))]
            if dead:
                conn.execute(update(submissions).where(and_(
                    submissions.c.id.in_(dead), submissions.c.status == Status.SCORING)).values(
                    status=Status.QUEUED, claim_token=None, lease_until=None))
        return len(dead)

    def tracking_owed(self, older_than_seconds: float, limit: int = 20) -> list[int]:
        """Scored submissions whose MLflow logging is owed, recorded more than
        `older_than_seconds` ago (a job still running logs its own)."""
        since = self.ctx.now() - dt.timedelta(seconds=older_than_seconds)
        with db.read(self.ctx.engine) as conn:
            return list(conn.execute(select(submissions.c.id).where(and_(
                submissions.c.tracking_pending.is_(True),
                submissions.c.status == Status.SCORED, submissions.c.scored_at < since))
                .order_by(submissions.c.id).limit(limit)).scalars())

    def release(self, claim: Claim) -> bool:
        """Put a claimed job back in the queue (its dispatcher stops without running it)."""
        with db.write(self.ctx.engine) as conn:
            return _holds(conn, claim, values={"status": Status.QUEUED, "claim_token": None,
                                               "lease_until": None})


def _holds(conn: Connection, claim: Claim, values: dict[str, object]) -> bool:
    """Update the job's row only while `claim` still holds it."""
    result = conn.execute(update(submissions).where(and_(
        submissions.c.id == claim.submission_id, submissions.c.claim_token == claim.token,
        submissions.c.status == Status.SCORING)).values(**values))
    return bool(result.rowcount)


def still_claimed(conn: Connection, claim: Claim) -> bool:
    row = conn.execute(select(submissions.c.claim_token, submissions.c.status)
                       .where(submissions.c.id == claim.submission_id)).first()
    return row is not None and row.claim_token == claim.token and row.status == Status.SCORING


def finish_claim(conn: Connection, claim: Claim, result: ScoredFile) -> bool:
    """Close the claim of a job whose result is being recorded (in the caller's transaction,
    before the result is written): False when the claim was lost, then nothing is written."""
    return _holds(conn, claim, values={"claim_token": None, "lease_until": None})
