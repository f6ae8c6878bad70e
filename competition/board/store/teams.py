"""Teams, their members and the hashed credentials of teams and organizers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from competition.board.store.db import Conflict
from competition.board.store.schema import (
    accounts,
    credentials,
    members,
    selections,
    sessions,
    submissions,
    team_invitations,
    teams,
    uploads,
)


def lock(conn: Connection, team_id: int) -> bool:
    """Serialise one team's reservations until the end of the transaction on SQL servers
    (a row lock; SQLite's write lock already serialises every writer). False where the team
    is gone (merged into another or removed since its id was read)."""
    query = select(teams.c.id).where(teams.c.id == team_id)
    if conn.dialect.name != "sqlite":
        query = query.with_for_update()
    return conn.execute(query).first() is not None


def named(conn: Connection, name: str, key: str) -> list[tuple[int, str]]:
    """(id, name) of the teams called `name` or whose name has the key `key`."""
    rows = conn.execute(select(teams.c.id, teams.c.name).where(
        (teams.c.name_key == key) | (teams.c.name == name)))
    return [(int(row.id), str(row.name)) for row in rows]


def insert_team(conn: Connection, name: str, key: str, created_at: datetime,
                baseline: bool) -> int:
    """A new team's id; Conflict where its name or key was taken meanwhile."""
    try:
        inserted = conn.execute(insert(teams).values(
            name=name, name_key=key, created_at=created_at, baseline=baseline)
        ).inserted_primary_key
    except IntegrityError as e:
        raise Conflict(f"team {name!r} exists already") from e
    assert inserted is not None
    return int(inserted[0])


def name_keys(conn: Connection) -> list[tuple[int, str, str | None]]:
    """(id, name, name key) of every team, by id."""
    rows = conn.execute(select(teams.c.id, teams.c.name, teams.c.name_key)
                        .order_by(teams.c.id))
    return [(int(row.id), str(row.name), row.name_key) for row in rows]


def set_name_keys(conn: Connection, keys: dict[int, str]) -> None:
    """Give teams new name keys (cleared first: a key may move from one team to another)."""
    conn.execute(update(teams).where(teams.c.id.in_(keys)).values(name_key=None))
    for team_id, key in keys.items():
        conn.execute(update(teams).where(teams.c.id == team_id).values(name_key=key))


def names(conn: Connection) -> dict[int, str]:
    """Every team's name by id."""
    return {int(row.id): str(row.name) for row in conn.execute(select(teams.c.id, teams.c.name))}


def member_names(conn: Connection, team_id: int) -> set[str]:
    return set(conn.execute(select(members.c.name).where(members.c.team_id == team_id))
               .scalars())


def add_members(conn: Connection, team_id: int, new: list[str]) -> None:
    if new:
        conn.execute(insert(members), [{"team_id": team_id, "name": m} for m in new])


def is_baseline(conn: Connection, team_id: int) -> bool:
    return bool(conn.execute(select(teams.c.baseline).where(teams.c.id == team_id)).scalar())


def has_token(conn: Connection, team_id: int) -> bool:
    return conn.execute(select(teams.c.token_sha256).where(teams.c.id == team_id)
                        ).scalar() is not None


def set_token(conn: Connection, team_id: int, token_sha256: str) -> None:
    conn.execute(update(teams).where(teams.c.id == team_id).values(token_sha256=token_sha256))


def set_credential(conn: Connection, name: str, token_sha256: str) -> None:
    """Replace the credential `name` (e.g. "organizer")."""
    conn.execute(credentials.delete().where(credentials.c.name == name))
    conn.execute(insert(credentials).values(name=name, token_sha256=token_sha256))


def credential_named(conn: Connection, token_sha256: str) -> str | None:
    """The name of the credential with this hash, if any."""
    name: str | None = conn.execute(select(credentials.c.name).where(
        credentials.c.token_sha256 == token_sha256)).scalar()
    return name


def by_token(conn: Connection, token_sha256: str) -> tuple[int, str] | None:
    """(id, name) of the team whose token has this hash, if any."""
    row = conn.execute(select(teams.c.id, teams.c.name)
                       .where(teams.c.token_sha256 == token_sha256)).first()
    return None if row is None else (int(row.id), str(row.name))


def rename(conn: Connection, team_id: int, name: str, key: str) -> None:
    """Give a team a new name and name key; Conflict where either was taken meanwhile."""
    try:
        conn.execute(update(teams).where(teams.c.id == team_id).values(name=name, name_key=key))
    except IntegrityError as e:
        raise Conflict(f"team {name!r} exists already") from e


def kept_rows(conn: Connection, team_id: int) -> dict[str, int]:
    """How many rows that must never be lost name the team: submissions, uploads, students."""
    def count(table: Any) -> int:
        return int(conn.execute(select(func.count()).where(table.c.team_id == team_id))
                   .scalar_one())
    return {"submissions": count(submissions), "uploads": count(uploads),
            "students": count(accounts)}


def delete_team(conn: Connection, team_id: int) -> None:
    """Delete a team with its members, selections, sessions and invitations (callers make
    sure that it has no submissions, uploads or students: see kept_rows)."""
    for table in (sessions, selections, members, team_invitations):
        conn.execute(delete(table).where(table.c.team_id == team_id))
    conn.execute(delete(teams).where(teams.c.id == team_id))


def team_of_token(conn: Connection, token_sha256: str) -> tuple[int, str] | None:
    """(id, name) of the team that this token acts as: the team's own token, or one of its
    students'."""
    found = by_token(conn, token_sha256)
    if found is not None:
        return found
    row = conn.execute(select(teams.c.id, teams.c.name)
                       .select_from(accounts.join(teams, teams.c.id == accounts.c.team_id))
                       .where(accounts.c.token_sha256 == token_sha256)).first()
    return None if row is None else (int(row.id), str(row.name))


def overview(conn: Connection) -> list[dict[str, Any]]:
    """Every team by name: id, name, created_at, baseline, has_token, members (sorted),
    students (their accounts' names, sorted) and submissions (how many)."""
    rows = conn.execute(select(teams.c.id, teams.c.name, teams.c.created_at, teams.c.baseline,
                               teams.c.token_sha256.is_not(None).label("has_token"))
                        .order_by(teams.c.name)).mappings().all()
    listed: dict[int, list[str]] = {}
    for row in conn.execute(select(members.c.team_id, members.c.name)):
        listed.setdefault(row.team_id, []).append(row.name)
    students: dict[int, list[str]] = {}
    for row in conn.execute(select(accounts.c.team_id, accounts.c.name)):
        students.setdefault(row.team_id, []).append(row.name)
    counts = {row[0]: row[1] for row in conn.execute(
        select(submissions.c.team_id, func.count()).group_by(submissions.c.team_id))}
    return [{**dict(r), "baseline": bool(r["baseline"]), "has_token": bool(r["has_token"]),
             "members": sorted(listed.get(r["id"], [])),
             "students": sorted(students.get(r["id"], [])), "submissions": counts.get(r["id"], 0)}
            for r in rows]
