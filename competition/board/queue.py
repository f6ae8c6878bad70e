"""The scoring queue in the store: jobs claimed, leased and recorded exactly once.

Every submission, whatever its door (the portal, the API, `competition submit`, `retry`, `run`,
`ensemble`), is `queued` in the same transaction that takes its slot. A dispatcher claims
queued jobs (`scoring`, a fresh claim token, a lease), hands each to a worker, and renews the
leases of the jobs it still runs; the command line claims its own submission (`claim_one`) and
scores it in its own process. A job records its result only while its claim holds
(`finish_claim`): a late or duplicated job whose claim was taken over finds the token changed
and records nothing, so every submission is recorded once. A claim whose lease ran out (its
holder died, on whatever host) is taken back by any claim, on any host; nothing depends on a
PID. A job claimed MAX_ATTEMPTS times without a result is `failed` (retryable) rather than
claimed again, so a file that kills whatever scores it cannot take workers for ever.

Claims are fair across teams (issue 33): jobs are taken round-robin, the team with the fewest
jobs in flight first, so a team's backlog delays another team's first job by at most one job;
and a team holds at most `portal.team_cpu_seconds_in_flight` of scoring CPU limits in flight
(at least one job), so slow uploads cannot take most workers.

On PostgreSQL, claims skip rows other dispatchers have locked (`FOR UPDATE SKIP LOCKED`); on
SQLite the database's write lock serialises them.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
from dataclasses import dataclass

from competition.board.context import BoardContext
from competition.board.prepared import PreparedCompetition
from competition.board.scorer_process import ScoredFile, scoring_limits
from competition.board.store import db, jobs
from competition.board.store.db import Connection

DEFAULT_LEASE_SECONDS = 60.0
# A shorter lease for tests (a killed holder's job comes back sooner); a longer one where a
# store's clock and the hosts' drift apart. Read where a Queue is made.
LEASE_ENV = "COMPETITION_LEASE_SECONDS"
# The host part of a holder's name, where the hostname is unstable (containers) or a test
# plays several hosts; only a label: nothing reads the process behind a name.
HOST_ENV = "COMPETITION_HOST_NAME"
# Claims of one job without a recorded result before it is failed instead of claimed again.
MAX_ATTEMPTS = 3
EXHAUSTED = (f"scoring was interrupted {MAX_ATTEMPTS} times; the submission can be "
             "retried")


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


def configured_lease_seconds() -> float:
    """The lease of a claim: `COMPETITION_LEASE_SECONDS` where set, else 60 s."""
    configured = os.environ.get(LEASE_ENV)
    return float(configured) if configured else DEFAULT_LEASE_SECONDS


def holder_name() -> str:
    """host:pid of this process, the host from `COMPETITION_HOST_NAME` where set."""
    return f"{os.environ.get(HOST_ENV) or socket.gethostname()}:{os.getpid()}"


class Queue:
    def __init__(self, ctx: BoardContext, holder: str, lease_seconds: float | None = None):
        """`holder` names the claimant (host:pid, see `holder_name`). The lease:
        `lease_seconds`, else `COMPETITION_LEASE_SECONDS`, else 60 s. The per-team cap comes
        from `ctx.comp` as it was read: a re-read competition.yaml needs a new Queue
        (Dispatcher.rebind)."""
        if lease_seconds is None:
            lease_seconds = configured_lease_seconds()
        self.ctx, self.holder = ctx, holder
        self.lease = dt.timedelta(seconds=lease_seconds)
        self.team_jobs = team_jobs_in_flight(ctx.comp)

    def claim(self, limit: int) -> list[Claim]:
        """Up to `limit` jobs, fairly across teams (see store.jobs.fair_pick): queued ones,
        and scoring ones whose lease ran out (their holder is gone); a job claimed
        MAX_ATTEMPTS times already is failed instead (see `_fail_exhausted`)."""
        now = self.ctx.now()
        with db.write(self.ctx.engine) as conn:
            _fail_exhausted(conn, now)
            picked = jobs.fair_pick(conn, now, self.team_jobs, limit)
            if not picked:
                return []
            # Lock what was picked, checking again that it is claimable: on PostgreSQL
            # another dispatcher may hold or have just taken some of these rows (skipped, or
            # no longer claimable once its claim committed), so no row is claimed twice; a
            # batch that lost rows that way is smaller, and the next poll takes more.
            rows = jobs.lock_claimable(conn, picked, now)
            return [self._take(conn, rows[sid], now) for sid in picked  # in the fair order
                    if sid in rows]

    def claim_one(self, submission_id: int) -> Claim | None:
        """Claim one given job (the command line scoring its own submission), if it is
        claimable: queued, or scoring under a lease that ran out. None when it is held by
        another claim, final, or failed now for its attempts (see `_fail_exhausted`)."""
        now = self.ctx.now()
        with db.write(self.ctx.engine) as conn:
            _fail_exhausted(conn, now, submission_id)
            row = jobs.lock_one_claimable(conn, submission_id, now)
            return None if row is None else self._take(conn, row, now)

    def _take(self, conn: Connection, row: jobs.Job, now: dt.datetime) -> Claim:
        """Claim a locked, claimable row: a fresh token, a lease, one more attempt."""
        token = secrets.token_hex(16)
        jobs.take(conn, row, token, self.holder, now + self.lease)
        return Claim(row.id, token, row.file_path, row.file_name, row.attempts + 1)

    def renew(self, claims: list[Claim]) -> list[Claim]:
        """Extend the leases of jobs still running; returns those whose claim was lost."""
        lost = []
        until = self.ctx.now() + self.lease
        with db.write(self.ctx.engine) as conn:
            for claim in claims:
                if not jobs.renew(conn, claim.submission_id, claim.token, until):
                    lost.append(claim)
        return lost

    def waiting(self) -> bool:
        """Whether a job waits to be claimed (a course's shared runner gives competitions with
        jobs waiting their even part of the workers: jobs.runners.SharedRunner)."""
        with db.read(self.ctx.engine) as conn:
            return jobs.any_claimable(conn, self.ctx.now())

    def held_elsewhere(self) -> tuple[int, dt.datetime | None]:
        """Jobs held under a lease that still runs, and when the last of those leases runs
        out (what a drain leaves to their holders, or to a later claim)."""
        with db.read(self.ctx.engine) as conn:
            return jobs.held(conn, self.ctx.now())

    def tracking_owed(self, older_than_seconds: float, limit: int = 20) -> list[int]:
        """Scored submissions whose MLflow logging is owed, recorded more than
        `older_than_seconds` ago (a job still running logs its own)."""
        since = self.ctx.now() - dt.timedelta(seconds=older_than_seconds)
        with db.read(self.ctx.engine) as conn:
            return jobs.tracking_owed(conn, since, limit)


def _fail_exhausted(conn: Connection, now: dt.datetime,
                    submission_id: int | None = None) -> None:
    """Fail, rather than claim again, the claimable jobs (or the one job) already claimed
    MAX_ATTEMPTS times without a result (each claim's holder died, or its lease ran out):
    retryable, and not counted, so their slots are given back as any failed submission's."""
    jobs.fail_exhausted(conn, now, MAX_ATTEMPTS, EXHAUSTED, submission_id)


def still_claimed(conn: Connection, claim: Claim) -> bool:
    return jobs.holds(conn, claim.submission_id, claim.token)


def finish_claim(conn: Connection, claim: Claim, result: ScoredFile) -> bool:
    """Close the claim of a job whose result is being recorded (in the caller's transaction,
    before the result is written): False when the claim was lost, then nothing is written."""
    return jobs.release(conn, claim.submission_id, claim.token)
