"""Students' accounts: one row each, in one team, with a hashed token of its own."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from competition.board.store.db import Conflict
from competition.board.store.schema import accounts, teams

COLUMNS = (accounts.c.id, accounts.c.name, accounts.c.email, accounts.c.student_id,
           accounts.c.team_id, teams.c.name.label("team"),
           accounts.c.token_sha256.is_not(None).label("has_token"))


def _rows(conn: Connection, *where: Any) -> list[dict[str, Any]]:
    query = (select(*COLUMNS).select_from(accounts.join(teams, teams.c.id == accounts.c.team_id))
             .where(*where).order_by(teams.c.name, accounts.c.name, accounts.c.id))
    return [{**dict(r), "has_token": bool(r["has_token"])}
            for r in conn.execute(query).mappings()]


def every(conn: Connection) -> list[dict[str, Any]]:
    """Every account by team and name: id, name, email, student_id, team_id, team,
    has_token."""
    return _rows(conn)


def matching(conn: Connection, text: str) -> list[dict[str, Any]]:
    """The accounts whose student id, email (any case) or name is exactly `text`."""
    return _rows(conn, (accounts.c.student_id == text) |
                 (accounts.c.email == text.lower()) | (accounts.c.name == text))


def insert_account(conn: Connection, name: str, email: str | None, student_id: str | None,
                   team_id: int, token_sha256: str | None, created_at: datetime) -> int:
    try:
        inserted = conn.execute(insert(accounts).values(
            name=name, email=email, student_id=student_id, team_id=team_id,
            token_sha256=token_sha256, created_at=created_at)).inserted_primary_key
    except IntegrityError as e:
        raise Conflict(f"a student with the id {student_id!r} or email {email!r} exists "
                       "already") from e
    assert inserted is not None
    return int(inserted[0])


def change(conn: Connection, account_id: int, **values: Any) -> None:
    """Set columns of one account (name, email, student_id, team_id, token_sha256)."""
    conn.execute(update(accounts).where(accounts.c.id == account_id).values(**values))


def token_hashes(conn: Connection) -> dict[int, str | None]:
    """Every account's token hash by account id (None: revoked)."""
    return {r.id: r.token_sha256 for r in conn.execute(select(accounts.c.id,
                                                              accounts.c.token_sha256))}
