"""Team invitations (codes, stored hashed) and the membership changes team forming makes:
students, submissions and uploads moved from one team to another."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, or_, select, update

from competition.board.store.schema import (
    accounts,
    members,
    sessions,
    submissions,
    team_invitations,
    teams,
    uploads,
)

inv = team_invitations


def insert_invitation(conn: Connection, team_id: int, code_sha256: str, created_by: int,
                      created_at: datetime, expires_at: datetime) -> int:
    inserted = conn.execute(insert(inv).values(
        team_id=team_id, code_sha256=code_sha256, created_by=created_by,
        created_at=created_at, expires_at=expires_at)).inserted_primary_key
    assert inserted is not None
    return int(inserted[0])


def by_code(conn: Connection, code_sha256: str) -> dict[str, Any] | None:
    """The invitation with this code hash, with its team's name and whether it is a
    baseline."""
    row = conn.execute(
        select(inv, teams.c.name.label("team"), teams.c.baseline)
        .select_from(inv.join(teams, teams.c.id == inv.c.team_id))
        .where(inv.c.code_sha256 == code_sha256)).mappings().first()
    return None if row is None else dict(row)


def open_of_team(conn: Connection, team_id: int, now: datetime) -> list[dict[str, Any]]:
    """The team's invitations that still admit (not used, revoked or expired), oldest first:
    id, created_at, expires_at, created_by_name. Never the code (only its hash is kept)."""
    rows = conn.execute(
        select(inv.c.id, inv.c.created_at, inv.c.expires_at,
               accounts.c.name.label("created_by_name"))
        .select_from(inv.outerjoin(accounts, accounts.c.id == inv.c.created_by))
        .where(inv.c.team_id == team_id, inv.c.used_at.is_(None), inv.c.revoked_at.is_(None),
               inv.c.expires_at > now)
        .order_by(inv.c.created_at, inv.c.id)).mappings()
    return [dict(r) for r in rows]


def made_since(conn: Connection, team_id: int, since: datetime) -> int:
    """How many invitations the team made from `since` on (used and revoked ones too)."""
    return int(conn.execute(select(func.count()).where(
        inv.c.team_id == team_id, inv.c.created_at >= since)).scalar_one())


def revoke(conn: Connection, invitation_id: int, team_id: int, now: datetime) -> bool:
    """Revoke one open invitation of the team; False where there is none such."""
    result = conn.execute(update(inv).where(
        inv.c.id == invitation_id, inv.c.team_id == team_id, inv.c.used_at.is_(None),
        inv.c.revoked_at.is_(None)).values(revoked_at=now))
    return bool(result.rowcount)


def revoke_all(conn: Connection, team_id: int, now: datetime) -> None:
    """Revoke every open invitation of the team."""
    conn.execute(update(inv).where(inv.c.team_id == team_id, inv.c.used_at.is_(None),
                                   inv.c.revoked_at.is_(None)).values(revoked_at=now))


def use(conn: Connection, invitation_id: int, account_id: int, now: datetime) -> bool:
    """Mark an invitation used, only if it still is open (one statement: two requests
    presenting one code cannot both use it); whether it was."""
    result = conn.execute(update(inv).where(
        inv.c.id == invitation_id, inv.c.used_at.is_(None), inv.c.revoked_at.is_(None),
        inv.c.expires_at > now).values(used_at=now, used_by=account_id))
    return bool(result.rowcount)


def students(conn: Connection, team_id: int) -> list[dict[str, Any]]:
    """The team's students by name: id, name, student_id, email, token_sha256."""
    rows = conn.execute(select(accounts.c.id, accounts.c.name, accounts.c.student_id,
                               accounts.c.email, accounts.c.token_sha256)
                        .where(accounts.c.team_id == team_id)
                        .order_by(accounts.c.name, accounts.c.id)).mappings()
    return [dict(r) for r in rows]


def account_of_token(conn: Connection, token_sha256: str) -> dict[str, Any] | None:
    """The account whose token has this hash, with its team: id, name, student_id, email,
    team_id, team, baseline, token_sha256."""
    row = conn.execute(
        select(accounts.c.id, accounts.c.name, accounts.c.student_id, accounts.c.email,
               accounts.c.team_id, accounts.c.token_sha256, teams.c.name.label("team"),
               teams.c.baseline)
        .select_from(accounts.join(teams, teams.c.id == accounts.c.team_id))
        .where(accounts.c.token_sha256 == token_sha256)).mappings().first()
    return None if row is None else dict(row)


def team_of_account(conn: Connection, account_id: int) -> int:
    return int(conn.execute(select(accounts.c.team_id).where(accounts.c.id == account_id))
               .scalar_one())


def tokens_of(conn: Connection, account_ids: list[int]) -> list[str]:
    """The token hashes of these accounts (revoked ones have none)."""
    if not account_ids:
        return []
    rows = conn.execute(select(accounts.c.token_sha256).where(accounts.c.id.in_(account_ids)))
    found: list[str | None] = list(rows.scalars())
    return [h for h in found if h]


def move_accounts(conn: Connection, account_ids: list[int], team_id: int) -> None:
    if account_ids:
        conn.execute(update(accounts).where(accounts.c.id.in_(account_ids))
                     .values(team_id=team_id))


def end_sessions(conn: Connection, credentials: list[str], team_id: int) -> None:
    """Delete the sessions opened with these tokens for any team but `team_id` (the moved
    students' old team): deleted, not merely no longer live, so that moving back later does
    not revive them."""
    if credentials:
        conn.execute(delete(sessions).where(
            sessions.c.credential_sha256.in_(credentials),
            or_(sessions.c.team_id != team_id, sessions.c.team_id.is_(None)),
            sessions.c.role == "team"))


def counted(conn: Connection, team_id: int) -> int:
    """The team's submissions that count towards the daily limit, all days together."""
    return int(conn.execute(select(func.count()).where(
        submissions.c.team_id == team_id, submissions.c.counted.is_(True))).scalar_one())


def first_submission(conn: Connection) -> datetime | None:
    """When the competition's first submission (any team's) was made."""
    found: datetime | None = conn.execute(select(func.min(submissions.c.submitted_at))
                                          ).scalar()
    return found


def move_team_rows(conn: Connection, from_id: int, to_id: int) -> None:
    """Give the team `to_id` everything `from_id` made (submissions, uploads) and its
    `team add --member` names (selections, sessions and invitations stay, to go with the
    team)."""
    for table in (submissions, uploads):
        conn.execute(update(table).where(table.c.team_id == from_id).values(team_id=to_id))
    known: set[str] = set(conn.execute(select(members.c.name)
                                       .where(members.c.team_id == to_id)).scalars())
    theirs: list[str] = list(conn.execute(select(members.c.name)
                                          .where(members.c.team_id == from_id)).scalars())
    moving = [m for m in theirs if m not in known]
    conn.execute(delete(members).where(members.c.team_id == from_id))
    if moving:
        conn.execute(insert(members), [{"team_id": to_id, "name": m} for m in moving])

