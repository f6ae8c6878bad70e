"""The course organizer: who may create competitions in a course (course_create.py).

Their token is the course's own (`competition organizer-token --course COURSE_DIR`), kept as
its SHA-256 in COURSE_DIR/course.yaml, read again whenever that file changes (a new token
ends the sessions of the old one at once). Signing in with it at the course's sign-in opens a
course-organizer session held here, in memory (a restart signs the organizer out), under a
cookie of its own; scripts send it as `Authorization: Bearer TOKEN`. The same token is also
each competition's organizer token (written into every one by the command, and into each
competition created from the portal), so the one sign-in opens their organizer pages too.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import HTTPException, Request

from competition.board.course import COURSE_CONFIG
from competition.board.teams import token_hash
from competition.configs import CourseConfig, load
from competition.errors import ConfigError
from competition.interfaces.web.security import Site, bearer_token

COURSE_ORGANIZER_COOKIE = "competition_course_organizer"
MAX_SESSIONS = 1000  # a bound on memory whatever signs in; the oldest go first


@dataclass
class _Session:
    credential: str  # the token's SHA-256 when it signed in
    csrf_token: str
    expires: float


@dataclass
class CourseOrganizer:
    """The course folder's settings and the course organizer's sessions."""

    folder: Path
    ttl_seconds: float
    _config: CourseConfig | None = None
    _signature: tuple[int, int, int] | None = None
    _sessions: dict[str, _Session] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def config_path(self) -> Path:
        return self.folder / COURSE_CONFIG

    def config(self) -> CourseConfig:
        """course.yaml as it is now (re-read when it changed; a broken file refuses every
        organizer action with its problem, rather than falling back to an older token)."""
        try:
            stat = self.config_path.stat()
        except OSError:
            raise HTTPException(503, f"the course folder has no readable {COURSE_CONFIG} "
                                     "now") from None
        signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        with self._lock:
            if signature != self._signature or self._config is None:
                try:
                    config = load(CourseConfig, self.config_path)
                    # A relative root is the course folder's (not the server's working one).
                    self._config = config.model_copy(update={"sources": [
                        self.folder / root for root in config.sources]})
                except ConfigError as e:
                    self._config, self._signature = None, None
                    raise HTTPException(503, f"{COURSE_CONFIG}: {str(e).split(': ', 1)[-1]}")\
                        from None
                self._signature = signature
            return self._config

    def is_token(self, token: str | None) -> bool:
        """Whether `token` is the course organizer's (compared in constant time)."""
        expected = self.config().organizer_token_sha256
        return bool(token and expected) and hmac.compare_digest(
            token_hash(str(token)).encode(), str(expected).encode())

    def open(self, token: str) -> str | None:
        """A new session for the course organizer's `token` (its id), else None."""
        if not self.is_token(token):
            return None
        sid = secrets.token_urlsafe(32)
        with self._lock:
            while len(self._sessions) >= MAX_SESSIONS:
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[sid] = _Session(token_hash(token), secrets.token_urlsafe(32),
                                           time.monotonic() + self.ttl_seconds)
        return sid

    def session(self, sid: str | None) -> _Session | None:
        """The live session of `sid` whose token is still the course organizer's."""
        if not sid:
            return None
        with self._lock:
            found = self._sessions.get(sid)
        if found is None:
            return None
        try:
            current = self.config().organizer_token_sha256
        except HTTPException:
            return None
        if found.expires < time.monotonic() or current != found.credential:
            self.revoke(sid)
            return None
        return found

    def revoke(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._sessions.pop(sid, None)


@dataclass(frozen=True)
class Organizing:
    """A request of the course organizer: by bearer token, or by session (which then needs
    its CSRF token on every change)."""

    via: str  # "token" or "session"
    csrf_token: str | None = None


def course_organizer_of(request: Request, organizer: CourseOrganizer | None,
                        site: Site) -> Organizing | None:
    """Who asks, if the course organizer (None otherwise: anyone else, a team or student
    token, or a competition's own organizer token alike)."""
    if organizer is None:
        return None
    token = bearer_token(request)
    if token is not None:
        try:
            return Organizing("token") if organizer.is_token(token) else None
        except HTTPException:  # course.yaml unreadable: nobody (its routes say why)
            return None
    found = organizer.session(site.cookie(request, COURSE_ORGANIZER_COOKIE))
    return None if found is None else Organizing("session", found.csrf_token)
