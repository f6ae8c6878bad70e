"""Every upload a team made, whatever became of it (the hourly upload limit counts them)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, and_, insert, select

from competition.board.store.schema import uploads


def times_since(conn: Connection, team_id: int, since: datetime) -> list[datetime]:
    """When the team uploaded after `since`, oldest first."""
    return list(conn.execute(select(uploads.c.uploaded_at).where(and_(
        uploads.c.team_id == team_id, uploads.c.uploaded_at > since))
        .order_by(uploads.c.uploaded_at)).scalars())


def add(conn: Connection, team_id: int, uploaded_at: datetime,
        submission_id: int | None) -> None:
    conn.execute(insert(uploads).values(team_id=team_id, uploaded_at=uploaded_at,
                                        submission_id=submission_id))
