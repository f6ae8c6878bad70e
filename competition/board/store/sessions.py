"""Signed-in browser sessions: rows keyed by the SHA-256 of the session id."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, and_, delete, exists, func, insert, or_, select

from competition.board.store.schema import accounts, credentials, sessions, teams


def drop_ended(conn: Connection, now: datetime) -> None:
    """Delete expired sessions, and revoked ones (stores from before revoking deleted them)."""
    conn.execute(delete(sessions).where(or_(sessions.c.expires_at <= now,
                                            sessions.c.revoked_at.is_not(None))))


def insert_session(conn: Connection, id_sha256: str, role: str, team_id: int | None,
                   credential_sha256: str, created_at: datetime, expires_at: datetime) -> None:
    conn.execute(insert(sessions).values(
        id_sha256=id_sha256, role=role, team_id=team_id, credential_sha256=credential_sha256,
        created_at=created_at, expires_at=expires_at))


def of_credential(conn: Connection, credential_sha256: str) -> list[str]:
    """The session hashes opened with this credential, newest first."""
    return list(conn.execute(
        select(sessions.c.id_sha256).where(sessions.c.credential_sha256 == credential_sha256)
        .order_by(sessions.c.created_at.desc(), sessions.c.id_sha256)).scalars())


def delete_sessions(conn: Connection, id_sha256s: list[str]) -> int:
    """Delete these sessions; how many there were."""
    result = conn.execute(delete(sessions).where(sessions.c.id_sha256.in_(id_sha256s)))
    return int(result.rowcount)


def live(conn: Connection, id_sha256: str, now: datetime
         ) -> tuple[str, datetime, str | None, str] | None:
    """(role, expires_at, team name, credential hash) of the session with this hash while it
    is live: not
    expired, not revoked, and its credential still the team's (or the organizer's) token, or
    the token of a student who is still in the session's team."""
    organizer_token = select(credentials.c.token_sha256).where(
        credentials.c.name == "organizer").scalar_subquery()
    row = conn.execute(
        select(sessions.c.role, sessions.c.expires_at, teams.c.name,
               sessions.c.credential_sha256)
        .select_from(sessions.outerjoin(teams, teams.c.id == sessions.c.team_id))
        .where(and_(
            sessions.c.id_sha256 == id_sha256,
            # (revoked_at: rows of stores from before revoking deleted them)
            sessions.c.revoked_at.is_(None), sessions.c.expires_at > now,
            or_(and_(sessions.c.role == "team",
                     or_(teams.c.token_sha256 == sessions.c.credential_sha256,
                         exists().where(
                             accounts.c.token_sha256 == sessions.c.credential_sha256,
                             accounts.c.team_id == sessions.c.team_id))),
                and_(sessions.c.role == "organizer",
                     sessions.c.credential_sha256 == func.coalesce(organizer_token,
                                                                   "")))))).first()
    return None if row is None else (str(row.role), row.expires_at, row.name,
                                     str(row.credential_sha256))


def unexpired(conn: Connection, id_sha256: str, now: datetime) -> tuple[str, datetime] | None:
    """(credential hash, expires_at) of a team session that is neither expired nor
    revoked."""
    row = conn.execute(select(sessions.c.credential_sha256, sessions.c.expires_at).where(
        sessions.c.id_sha256 == id_sha256, sessions.c.role == "team",
        sessions.c.revoked_at.is_(None), sessions.c.expires_at > now)).first()
    return None if row is None else (str(row.credential_sha256), row.expires_at)
