"""The scoring queue in the store: jobs claimed, leased and recorded exactly once.

A submission accepted by the portal is `queued` in the same transaction that takes its slot.
A dispatcher claims queued jobs (`scoring`, a fresh claim token, a lease), hands each to a
worker, and renews the leases of the jobs it still runs. A job records its result only while
its claim holds (`record_claimed`): a late or duplicated job whose claim was taken over finds
the token changed and records nothing, so every submission is recorded once. A claim whose
lease ran out (its dispatcher died) is taken back to the queue by any dispatcher.

Claims are fair across teams (issue 33): jobs are taken round-robin, the team with the fewest
jobs in flight first, so a team's backlog delays another team's first job by at most one job;
and a team holds at most `portal.team_cpu_seconds_in_flight` of scoring CPU limits in flight
(at least one job), so slow uploads cannot take most workers.

On PostgreSQL, claims skip rows other dispatchers have locked (`FOR UPDATE SKIP LOCKED`); on
SQLite the database's write lock serialises them.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, and_, func, or_, select, update

from competition.board.context import BoardContext
from competition.board.prepared import PreparedCompetition
from competition.board.scorer_process import ScoredFile, scoring_limits
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


def team_jobs_in_flight(comp: PreparedCompetition) -> int:
    """How many jobs one team may have in flight: `portal.team_cpu_seconds_in_flight` over
    the scoring CPU limit each job may use (null: two jobs), and at least one, so that no
    team is ever starved."""
    per_job = scoring_limits(comp).cpu_seconds
    allowed = comp.config.portal.team_cpu_seconds_in_flight or 2 * per_job
    return max(1, allowed // per_job)


class Queue:
    def __init__(self, ctx: BoardContext, holder: str,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS):
        """`holder` names the dispatcher (e.g. host:pid of a serve process). The per-team
        cap comes from `ctx.comp` as it was read: a re-read competition.yaml needs a new
        Queue (Dispatcher.rebind)."""
        self.ctx, self.holder, self.lease = ctx, holder, dt.timedelta(seconds=lease_seconds)
        self.team_jobs = team_jobs_in_flight(ctx.comp)

    def claim(self, limit: int) -> list[Claim]:
        """Up to `limit` jobs, fairly across teams (see `_fair_pick`): queued ones, and
        scoring ones whose lease ran out (their dispatcher is gone)."""
        now = self.ctx.now()
        claimable = _claimable(now)
        with db.write(self.ctx.engine) as conn:
            picked = _fair_pick(conn, claimable, now, self.team_jobs, limit)
            if not picked:
                return []
            # Lock what was picked, checking again that it is claimable: on PostgreSQL
            # another dispatcher may hold or have just taken some of these rows (skipped, or
            # no longer claimable once its claim committed), so no row is claimed twice; a
            # batch that lost rows that way is smaller, and the next poll takes more.
            query = (select(submissions.c.id, submissions.c.file_path,
                            submissions.c.file_name, submissions.c.attempts)
                     .where(and_(submissions.c.id.in_(picked), claimable)))
            if conn.dialect.name != "sqlite":
                query = query.with_for_update(skip_locked=True)
            rows = {row.id: row for row in conn.execute(query)}
            claims = []
            for sid in picked:  # in the fair order
                row = rows.get(sid)
                if row is None:
                    continue
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


def _claimable(now: dt.datetime) -> ColumnElement[bool]:
    return or_(submissions.c.status == Status.QUEUED,
               and_(submissions.c.status == Status.SCORING, submissions.c.lease_until < now))


def _fair_pick(conn: Connection, claimable: ColumnElement[bool], now: dt.datetime,
               team_jobs: int, limit: int) -> list[int]:
    """The ids of up to `limit` claimable jobs in round-robin order, computed in the
    database (only the ids come back, however long the queue).

    A team's k-th oldest claimable job (k from 0) would be its (in flight + k + 1)-th job in
    flight, its turn being `in flight + k`: jobs go by turn, so the team with the fewest jobs
    in flight (those claimed in this batch included) goes first, and each team's oldest job
    first. Within a turn each team has one job, its oldest waiting one: the oldest of those
    goes first. Jobs whose turn reaches `team_jobs` wait. In flight: scoring under a live
    lease, by any dispatcher.

    A plain query (no row locks: PostgreSQL allows none beside a window function); the
    caller locks the rows it picked."""
    in_flight = (select(submissions.c.team_id, func.count().label("n"))
                 .where(and_(submissions.c.status == Status.SCORING,
                             submissions.c.lease_until >= now))
                 .group_by(submissions.c.team_id).subquery("in_flight"))
    rank = func.row_number().over(partition_by=submissions.c.team_id,
                                  order_by=submissions.c.id) - 1
    waiting = (select(submissions.c.id, submissions.c.team_id, rank.label("rank"))
               .where(claimable).subquery("waiting"))
    turn = func.coalesce(in_flight.c.n, 0) + waiting.c.rank
    query = (select(waiting.c.id)
             .select_from(waiting.outerjoin(in_flight,
                                            in_flight.c.team_id == waiting.c.team_id))
             .where(turn < team_jobs).order_by(turn, waiting.c.id).limit(limit))
    return list(conn.execute(query).scalars())


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
