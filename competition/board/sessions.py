"""Signed-in browser sessions, kept server-side.

Signing in exchanges a team's (or the organizer's) token for a random session id: the browser
keeps the id in a cookie, the store keeps only its SHA-256 with the role, the team, the hash of
the token it was opened with, and when it expires. A session ends when it expires, when it is
revoked (logout), or when its token is replaced (`team add`/`organizer-token` issue a new one),
so a copied cookie stops working at the latest when the token it came from does. A revoked
session's row is deleted at once (nothing of it is kept to be read back); expired rows go at
the next sign-in.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, insert, or_, select

from competition.board.context import BoardContext
from competition.board.store import db
from competition.board.store.schema import credentials, sessions, teams
from competition.board.teams import Teams, token_hash

DEFAULT_TTL = timedelta(hours=12)
# Signing in again and again must not fill the store: past this many live sessions of one
# token, the oldest are deleted.
MAX_LIVE_PER_TOKEN = 20


@dataclass(frozen=True)
class Session:
    role: str  # "team" or "organizer"
    team: str | None
    expires_at: datetime
    csrf_token: str  # what forms of this session carry (see `csrf_token_of`)


def session_hash(session_id: str) -> str:
    # Session ids are 256-bit random strings: the hash cannot be turned back into a cookie.
    return hashlib.sha256(b"session\0" + session_id.encode()).hexdigest()


def csrf_token_of(session_id: str) -> str:
    """The session's CSRF token: derived one-way from the id, which only the browser holding
    the (HttpOnly) cookie knows; a page showing the token reveals nothing of the id."""
    return hashlib.sha256(b"csrf\0" + session_id.encode()).hexdigest()


class Sessions:
    def __init__(self, ctx: BoardContext, teams: Teams):
        self.ctx, self.teams = ctx, teams

    def open(self, token: str, ttl: timedelta = DEFAULT_TTL) -> tuple[str, Session] | None:
        """A new session for a valid token: (its id for the cookie, the session); None for an
        unknown token."""
        who = self.teams.who(token)
        if who is None:
            return None
        role, team = who
        session_id = secrets.token_urlsafe(32)
        now = self.ctx.now()
        credential = token_hash(token)
        with db.write(self.ctx.engine) as conn:
            # By the token, not the name: a name stored before a newer check still signs in.
            team_id = conn.execute(select(teams.c.id).where(
                teams.c.token_sha256 == credential)).scalar() if role == "team" else None
            if role == "team" and team_id is None:
                return None  # the team or its token went away between the two reads
            # Expired rows, and rows revoked by stores from before revoking deleted them.
            conn.execute(delete(sessions).where(or_(sessions.c.expires_at <= now,
                                                    sessions.c.revoked_at.is_not(None))))
            conn.execute(insert(sessions).values(
                id_sha256=session_hash(session_id), role=role, team_id=team_id,
                credential_sha256=credential, created_at=now, expires_at=now + ttl))
            live: list[str] = list(conn.execute(
                select(sessions.c.id_sha256).where(sessions.c.credential_sha256 == credential)
                .order_by(sessions.c.created_at.desc(), sessions.c.id_sha256)).scalars())
            if len(live) > MAX_LIVE_PER_TOKEN:
                conn.execute(delete(sessions).where(
                    sessions.c.id_sha256.in_(live[MAX_LIVE_PER_TOKEN:])))
        return session_id, Session(role, team, now + ttl, csrf_token_of(session_id))

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id, or None (unknown, expired, revoked, or its token
        replaced since)."""
        if not session_id or len(session_id) > 200:
            return None
        now = self.ctx.now()
        organizer_token = select(credentials.c.token_sha256).where(
            credentials.c.name == "organizer").scalar_subquery()
        with db.read(self.ctx.engine) as conn:
            row = conn.execute(
                select(sessions.c.role, sessions.c.expires_at, teams.c.name)
                .select_from(sessions.outerjoin(teams, teams.c.id == sessions.c.team_id))
                .where(and_(
                    sessions.c.id_sha256 == session_hash(session_id),
                    # (revoked_at: rows of stores from before revoking deleted them)
                    sessions.c.revoked_at.is_(None), sessions.c.expires_at > now,
                    or_(and_(sessions.c.role == "team",
                             teams.c.token_sha256 == sessions.c.credential_sha256),
                        and_(sessions.c.role == "organizer",
                             sessions.c.credential_sha256 == func.coalesce(organizer_token,
                                                                           "")))))).first()
        if row is None:
            return None
        return Session(row.role, row.name, row.expires_at, csrf_token_of(session_id))

    def revoke(self, session_id: str | None) -> bool:
        """End a session now (logout): its row is deleted; True if there was one."""
        if not session_id or len(session_id) > 200:
            return False
        with db.write(self.ctx.engine) as conn:
            result = conn.execute(delete(sessions).where(
                sessions.c.id_sha256 == session_hash(session_id)))
        return bool(result.rowcount)
