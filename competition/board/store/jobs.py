"""The scoring queue's rows: claimable jobs picked fairly, locked, claimed under a lease and
released only by the claim that holds them (the policy is competition.board.queue's).

On PostgreSQL the rows a claim takes are locked `FOR UPDATE SKIP LOCKED`; on SQLite the
database's write lock serialises claims.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, Select, and_, func, or_, select, update

from competition.board.status import Status
from competition.board.store.schema import submissions


@dataclass(frozen=True)
class Job:
    """A claimable job's row, locked by the caller's transaction."""

    id: int
    file_path: str
    file_name: str
    attempts: int


def _claimable(now: dt.datetime, submission_id: int | None = None) -> ColumnElement[bool]:
    # `pending`: a row left by a command of an earlier version, which scored in its own
    # process and is gone; queued by another name.
    claimable = or_(submissions.c.status.in_((Status.QUEUED, Status.PENDING)),
                    and_(submissions.c.status == Status.SCORING,
                         submissions.c.lease_until < now))
    return claimable if submission_id is None else \
        and_(submissions.c.id == submission_id, claimable)


def fail_exhausted(conn: Connection, now: dt.datetime, max_attempts: int, error: str,
                   submission_id: int | None = None) -> None:
    """Fail, uncounted and unclaimed, the claimable jobs (or the one job) claimed
    `max_attempts` times already."""
    conn.execute(update(submissions).where(and_(
        _claimable(now, submission_id), submissions.c.attempts >= max_attempts)).values(
        status=Status.FAILED, counted=False, claim_token=None, lease_until=None, error=error))


def fair_pick(conn: Connection, now: dt.datetime, team_jobs: int, limit: int) -> list[int]:
    """The ids of up to `limit` claimable jobs in round-robin order, computed in the
    database (only the ids come back, however long the queue).

    A team's k-th oldest claimable job (k from 0) would be its (in flight + k + 1)-th job in
    flight, its turn being `in flight + k`: jobs go by turn, so the team with the fewest jobs
    in flight (those claimed in this batch included) goes first, and each team's oldest job
    first. Within a turn each team has one job, its oldest waiting one: the oldest of those
    goes first. Jobs whose turn reaches `team_jobs` wait. In flight: scoring under a live
    lease, by any dispatcher.

    A plain query (no row locks: PostgreSQL allows none beside a window function); the
    caller locks the rows it picked (`lock_claimable`)."""
    in_flight = (select(submissions.c.team_id, func.count().label("n"))
                 .where(and_(submissions.c.status == Status.SCORING,
                             submissions.c.lease_until >= now))
                 .group_by(submissions.c.team_id).subquery("in_flight"))
    rank = func.row_number().over(partition_by=submissions.c.team_id,
                                  order_by=submissions.c.id) - 1
    waiting = (select(submissions.c.id, submissions.c.team_id, rank.label("rank"))
               .where(_claimable(now)).subquery("waiting"))
    turn = func.coalesce(in_flight.c.n, 0) + waiting.c.rank
    query = (select(waiting.c.id)
             .select_from(waiting.outerjoin(in_flight,
                                            in_flight.c.team_id == waiting.c.team_id))
             .where(turn < team_jobs).order_by(turn, waiting.c.id).limit(limit))
    return list(conn.execute(query).scalars())


def _locked(conn: Connection, query: Select[tuple[int, str, str, int]]
            ) -> Select[tuple[int, str, str, int]]:
    # Rows another dispatcher holds are skipped, not waited for.
    return query if conn.dialect.name == "sqlite" else query.with_for_update(skip_locked=True)


def lock_claimable(conn: Connection, ids: list[int], now: dt.datetime) -> dict[int, Job]:
    """Lock those of `ids` that are still claimable (on PostgreSQL, not locked by another
    transaction); by id."""
    query = select(submissions.c.id, submissions.c.file_path, submissions.c.file_name,
                   submissions.c.attempts).where(and_(submissions.c.id.in_(ids),
                                                      _claimable(now)))
    return {row.id: Job(row.id, row.file_path, row.file_name, row.attempts)
            for row in conn.execute(_locked(conn, query))}


def lock_one_claimable(conn: Connection, submission_id: int, now: dt.datetime) -> Job | None:
    """Lock the job if it is claimable (and, on PostgreSQL, not locked by another)."""
    query = select(submissions.c.id, submissions.c.file_path, submissions.c.file_name,
                   submissions.c.attempts).where(_claimable(now, submission_id))
    row = conn.execute(_locked(conn, query)).first()
    return None if row is None else Job(row.id, row.file_path, row.file_name, row.attempts)


def take(conn: Connection, job: Job, token: str, holder: str, lease_until: dt.datetime) -> None:
    """Claim a locked, claimable job: scoring, under `token` and a lease, one more attempt."""
    conn.execute(update(submissions).where(submissions.c.id == job.id).values(
        status=Status.SCORING, claim_token=token, claimed_by=holder, lease_until=lease_until,
        attempts=job.attempts + 1))


def _holds(conn: Connection, submission_id: int, token: str,
           values: dict[str, object]) -> bool:
    """Update the job's row only while the claim `token` still holds it."""
    result = conn.execute(update(submissions).where(and_(
        submissions.c.id == submission_id, submissions.c.claim_token == token,
        submissions.c.status == Status.SCORING)).values(**values))
    return bool(result.rowcount)


def renew(conn: Connection, submission_id: int, token: str, lease_until: dt.datetime) -> bool:
    """Extend the lease while the claim holds; False when it was lost."""
    return _holds(conn, submission_id, token, {"lease_until": lease_until})


def release(conn: Connection, submission_id: int, token: str) -> bool:
    """Close the claim while it holds (its result is being recorded); False when lost."""
    return _holds(conn, submission_id, token, {"claim_token": None, "lease_until": None})


def holds(conn: Connection, submission_id: int, token: str) -> bool:
    """Whether the claim `token` still holds the job."""
    row = conn.execute(select(submissions.c.claim_token, submissions.c.status)
                       .where(submissions.c.id == submission_id)).first()
    return row is not None and row.claim_token == token and row.status == Status.SCORING


def any_claimable(conn: Connection, now: dt.datetime) -> bool:
    """Whether a job waits to be claimed (one indexed row at most)."""
    return conn.execute(select(submissions.c.id).where(_claimable(now)).limit(1)).first() \
        is not None


def held(conn: Connection, now: dt.datetime) -> tuple[int, dt.datetime | None]:
    """Jobs held under a lease that still runs, and when the last of those leases ends."""
    row = conn.execute(select(func.count(), func.max(submissions.c.lease_until)).where(
        and_(submissions.c.status == Status.SCORING,
             submissions.c.lease_until >= now))).one()
    return int(row[0]), row[1]


def tracking_owed(conn: Connection, scored_before: dt.datetime, limit: int) -> list[int]:
    """Scored submissions whose MLflow logging is owed, recorded before `scored_before`."""
    return list(conn.execute(select(submissions.c.id).where(and_(
        submissions.c.tracking_pending.is_(True),
        submissions.c.status == Status.SCORED, submissions.c.scored_at < scored_before))
        .order_by(submissions.c.id).limit(limit)).scalars())
