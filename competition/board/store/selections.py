"""Final selections: (team, submission) pairs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, and_, insert, select

from competition.board.store.schema import selections


def of_team(conn: Connection, team_id: int) -> list[int]:
    """The submission ids the team selected."""
    return list(conn.execute(select(selections.c.submission_id)
                             .where(selections.c.team_id == team_id)).scalars())


def is_selected(conn: Connection, team_id: int, submission_id: int) -> bool:
    return conn.execute(select(selections.c.submission_id).where(and_(
        selections.c.team_id == team_id,
        selections.c.submission_id == submission_id))).first() is not None


def by_team(conn: Connection) -> dict[int, set[int]]:
    """Every team's selected submission ids, by team id."""
    chosen: dict[int, set[int]] = {}
    for row in conn.execute(select(selections.c.team_id, selections.c.submission_id)):
        chosen.setdefault(row.team_id, set()).add(row.submission_id)
    return chosen


def add(conn: Connection, team_id: int, submission_id: int, selected_at: datetime) -> None:
    conn.execute(insert(selections).values(team_id=team_id, submission_id=submission_id,
                                           selected_at=selected_at))


def remove(conn: Connection, team_id: int | None, submission_id: int) -> None:
    conn.execute(selections.delete().where(and_(
        selections.c.team_id == team_id, selections.c.submission_id == submission_id)))
