"""Signed-in browser sessions, kept server-side.

Signing in exchanges a team's, a student's (acting as the student's team) or the organizer's
token for a random session id: the browser keeps the id in a cookie, the store keeps only its
SHA-256 with the role, the team, the hash of the token it was opened with, and when it
expires. A session ends when it expires, when it is revoked (logout), when its token is
replaced (`team add --new-token`, `account reissue`, `organizer-token`) or revoked, or when
its student moves to another team, so a copied cookie stops working at the latest when the
token it came from does. A revoked session's row is deleted at once (nothing of it is kept to
be read back); expired rows go at the next sign-in.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from competition.board.context import BoardContext
from competition.board.store import db
from competition.board.store import sessions as store
from competition.board.store.teams import team_of_token
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
    credential: str = ""  # the SHA-256 of the token it was opened with (never shown)


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
        return self.open_credential(token_hash(token), ttl)

    def open_credential(self, credential: str, ttl: timedelta = DEFAULT_TTL
                        ) -> tuple[str, Session] | None:
        """`open` for a token known by its hash (the course organizer's session opens one in
        a competition it has just created, whose organizer token is the course's)."""
        who = self.teams.who_by_hash(credential)
        if who is None:
            return None
        role, team = who
        session_id = secrets.token_urlsafe(32)
        now = self.ctx.now()
        with db.write(self.ctx.engine) as conn:
            # By the token, not the name: a name stored before a newer check still signs in.
            team_id = None
            if role == "team":
                found = team_of_token(conn, credential)
                if found is None:
                    return None  # the team or its token went away between the two reads
                team_id = found[0]
            store.drop_ended(conn, now)
            store.insert_session(conn, session_hash(session_id), role, team_id, credential,
                                 now, now + ttl)
            live = store.of_credential(conn, credential)
            if len(live) > MAX_LIVE_PER_TOKEN:
                store.delete_sessions(conn, live[MAX_LIVE_PER_TOKEN:])
        return session_id, Session(role, team, now + ttl, csrf_token_of(session_id),
                                   credential)

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id, or None (unknown, expired, revoked, or its token
        replaced since)."""
        if not session_id or len(session_id) > 200:
            return None
        now = self.ctx.now()
        with db.read(self.ctx.engine) as conn:
            row = store.live(conn, session_hash(session_id), now)
        if row is None:
            return None
        role, expires_at, team, credential = row
        return Session(role, team, expires_at, csrf_token_of(session_id), credential)

    def held(self, session_id: str | None) -> tuple[str, datetime] | None:
        """(the token's hash, expires_at) of a team session neither expired nor revoked, read
        before a team-forming change ends it (see `reopen`)."""
        if not session_id or len(session_id) > 200:
            return None
        with db.read(self.ctx.engine) as conn:
            return store.unexpired(conn, session_hash(session_id), self.ctx.now())

    def reopen(self, credential: str, expires_at: datetime) -> tuple[str, Session] | None:
        """A student changed teams in their browser (team forming): the move ended the
        session of the old team; this is a new one (a new id) for the team the student's
        token acts as now, expiring when the old one would have. None where the token no
        longer acts as any team. Opened as any session is (ended ones dropped, the live
        ones of a token capped), so changing teams again and again piles none up."""
        left = expires_at - self.ctx.now()
        opened = self.open_credential(credential, left) if left > timedelta(0) else None
        return opened if opened is not None and opened[1].role == "team" else None

    def revoke(self, session_id: str | None) -> bool:
        """End a session now (logout): its row is deleted; True if there was one."""
        if not session_id or len(session_id) > 200:
            return False
        with db.write(self.ctx.engine) as conn:
            return bool(store.delete_sessions(conn, [session_hash(session_id)]))
