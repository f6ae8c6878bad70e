"""Submission rows: admitted, read, failed, retried, their files given back. Rows come back as
plain dicts of the `submissions` columns (with `team`, the team's name, where it says so)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update

from competition.board.status import COUNTED, Status
from competition.board.store.schema import code_runs, submissions, teams


def row(conn: Connection, submission_id: int) -> dict[str, Any]:
    """The submission's row (it must exist)."""
    return dict(conn.execute(select(submissions).where(submissions.c.id == submission_id))
                .mappings().one())


def with_team(conn: Connection, submission_id: int) -> dict[str, Any] | None:
    """The submission's row with its team's name as `team`, or None."""
    found = conn.execute(select(submissions, teams.c.name.label("team"))
                         .join(teams, teams.c.id == submissions.c.team_id)
                         .where(submissions.c.id == submission_id)).mappings().first()
    return dict(found) if found else None


def of_team(conn: Connection, team_id: int) -> list[dict[str, Any]]:
    """The team's rows, oldest first."""
    return [dict(r) for r in conn.execute(select(submissions)
                                          .where(submissions.c.team_id == team_id)
                                          .order_by(submissions.c.id)).mappings()]


def one_of_team(conn: Connection, submission_id: int, team_id: int | None
                ) -> dict[str, Any] | None:
    found = conn.execute(select(submissions).where(and_(
        submissions.c.id == submission_id, submissions.c.team_id == team_id))
    ).mappings().first()
    return dict(found) if found else None


def team_and_status(conn: Connection, submission_id: int) -> tuple[int, str] | None:
    found = conn.execute(select(submissions.c.team_id, submissions.c.status)
                         .where(submissions.c.id == submission_id)).first()
    return None if found is None else (int(found.team_id), str(found.status))


def overview(conn: Connection) -> list[dict[str, Any]]:
    """Every submission with its team (organizer view), by id."""
    return [dict(r) for r in conn.execute(
        select(submissions.c.id, teams.c.name.label("team"), submissions.c.status,
               submissions.c.submitted_at, submissions.c.file_name,
               submissions.c.public_score, submissions.c.private_score, submissions.c.error,
               submissions.c.message)
        .join(teams, teams.c.id == submissions.c.team_id)
        .order_by(submissions.c.id)).mappings()]


def made_since(conn: Connection, moment: datetime) -> int:
    """How many submissions (any status) were made at or after `moment`."""
    return int(conn.execute(select(func.count()).select_from(submissions)
                            .where(submissions.c.submitted_at >= moment)).scalar_one())


def counted_between(conn: Connection, team_id: int, start: datetime, end: datetime) -> int:
    """The team's submissions made in [start, end) that count toward its daily limit (a
    failed one only where its code's own failure counts: issue 32)."""
    used: int = conn.execute(select(func.count()).select_from(submissions).where(and_(
        submissions.c.team_id == team_id, submissions.c.counted.is_(True),
        submissions.c.status.in_((*COUNTED, Status.FAILED)),
        submissions.c.submitted_at >= start, submissions.c.submitted_at < end))).scalar_one()
    return used


def earliest_scored(conn: Connection, team_id: int, file_sha256: str
                    ) -> tuple[int, float | None, float | None] | None:
    """(id, public, private) of the team's first scored submission of this file, if any."""
    found = conn.execute(
        select(submissions.c.id, submissions.c.public_score, submissions.c.private_score)
        .where(and_(submissions.c.team_id == team_id,
                    submissions.c.file_sha256 == file_sha256,
                    submissions.c.status == Status.SCORED))
        .order_by(submissions.c.id).limit(1)).first()
    return None if found is None else (int(found[0]), found[1], found[2])


def insert_submission(conn: Connection, **values: Any) -> int:
    """A new row (values by column name); its id."""
    key = conn.execute(insert(submissions).values(**values)).inserted_primary_key
    assert key is not None
    return int(key[0])


def fail_waiting(conn: Connection, submission_id: int, error: str) -> None:
    """Fail, uncounted and unclaimed, a submission still queued or being scored."""
    conn.execute(update(submissions).where(and_(
        submissions.c.id == submission_id,
        submissions.c.status.in_((Status.QUEUED, Status.SCORING))))
        .values(status=Status.FAILED, counted=False, claim_token=None, lease_until=None,
                error=error))


def requeue(conn: Connection, submission_id: int) -> None:
    """Queue a submission again, counted, its attempts starting again from none."""
    conn.execute(update(submissions).where(submissions.c.id == submission_id).values(
        status=Status.QUEUED, counted=True, error=None, claim_token=None, claimed_by=None,
        lease_until=None, attempts=0))


def not_invalid_using(conn: Connection, file_path: str) -> int:
    """How many submissions that are not invalid reference the kept file `file_path`."""
    kept: int = conn.execute(select(func.count()).select_from(submissions).where(and_(
        submissions.c.file_path == file_path,
        submissions.c.status != Status.INVALID))).scalar_one()
    return kept


def mark_file_deleted(conn: Connection, file_path: str, now: datetime) -> None:
    conn.execute(update(submissions).where(and_(
        submissions.c.file_path == file_path, submissions.c.file_deleted_at.is_(None)))
        .values(file_deleted_at=now))


def rescorable(conn: Connection) -> list[dict[str, Any]]:
    """Scored, invalid and failed rows whose file is kept, by id."""
    return [dict(r) for r in conn.execute(select(submissions).where(and_(
        submissions.c.status.in_((Status.SCORED, Status.INVALID, Status.FAILED)),
        submissions.c.file_deleted_at.is_(None))).order_by(submissions.c.id)).mappings()]


def stamp_duplicates(conn: Connection, scorer_version: str | None,
                     solution_sha256: str | None) -> None:
    """Duplicates carry the scorer identity of the last rescoring."""
    conn.execute(update(submissions).where(submissions.c.status == Status.DUPLICATE)
                 .values(scorer_version=scorer_version, solution_sha256=solution_sha256))


def scored_with_teams(conn: Connection) -> list[dict[str, Any]]:
    """The boards' rows: every scored submission's id, team_id, public_score,
    private_score, submitted_at, its team's name as `team` and `baseline`, and for a code
    submission its run's wall_seconds and peak_memory_mb (None for a file)."""
    return [dict(r) for r in conn.execute(
        select(submissions.c.id, submissions.c.team_id, submissions.c.public_score,
               submissions.c.private_score, submissions.c.submitted_at,
               teams.c.name.label("team"), teams.c.baseline,
               code_runs.c.wall_seconds, code_runs.c.peak_memory_mb)
        .join(teams, teams.c.id == submissions.c.team_id)
        .outerjoin(code_runs, code_runs.c.submission_id == submissions.c.id)
        .where(submissions.c.status == Status.SCORED)).mappings()]
