"""The portal's state (one competition and its board, re-read when competition.yaml changes)
and the dependencies that say who is asking.

Who: a team token or the organizer token as `Authorization: Bearer TOKEN` (API, scripts), or
a server-side session whose random id the login form put in an HttpOnly, SameSite=Strict
cookie (pages). The cookie never holds a token. A state-changing request that relies on the
cookie must carry the session's CSRF token (form field `csrf_token` or header
`X-CSRF-Token`); every state-changing request with a foreign `Origin`/`Referer` is refused.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from competition.board import leaderboard
from competition.board.board import Board
from competition.board.context import Closed, LimitReached
from competition.board.prepared import PreparedCompetition
from competition.board.scorer_process import ChildScorer
from competition.board.sessions import DEFAULT_TTL, Sessions
from competition.board.status import WAITING
from competition.board.views import Entry, Outcome
from competition.errors import CompetitionError
from competition.formats.csv_safe import csv_text
from competition.interfaces.web.sign_in_limits import SignInLimits, client_address
from competition.interfaces.web.upload_slots import UploadSlots
from competition.jobs.dispatcher import Dispatcher
from competition.jobs.job import DEFAULT_SCORER
from competition.jobs.runners import Runner, ThreadRunner

log = logging.getLogger(__name__)
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
SESSION_COOKIE = "competition_session"
CSRF_COOKIE = "competition_csrf"  # the login form's token before there is a session
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The two routes that take a file: their bodies are streamed (see uploads.py), with the
# competition's size limit; every other body is small.
UPLOAD_PATHS = frozenset({"/submit", "/api/submissions"})
TRUST_PROXY_ENV = "COMPETITION_TRUST_PROXY"
SESSION_HOURS_ENV = "COMPETITION_SESSION_HOURS"


class Viewer(BaseModel):
    role: str  # "team" or "organizer"
    team: str | None = None
    via: str = "token"  # "token" (Authorization header) or "session" (cookie)
    csrf_token: str | None = None  # the session's, with via="session"


@dataclass(frozen=True)
class _Loaded:
    """One reading of competition.yaml and the board built on it."""

    signature: tuple[int, int, int]
    comp: PreparedCompetition
    board: Board
    sessions: Sessions


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class Portal:
    """One competition served: its board, its public files and its description.

    competition.yaml is watched with one `stat` per request: when it changed, the competition
    and its board are opened again, so new rules (daily limit, deadline, size limit...) hold
    from the next request on. A file that no longer loads keeps the old rules (and is logged).
    """

    def __init__(self, directory: Path | str, store_url: str | None = None, *,
                 trust_proxy: bool | None = None, session_ttl: timedelta | None = None,
                 runner: Runner | None = None, scorer_spec: str = DEFAULT_SCORER):
        """`runner`: where scoring jobs run (default: two threads of this process, each job
        scoring in a child process; `competition serve` gives a Dask cluster)."""
        self.directory = Path(directory)
        self.store_url = store_url
        self.trust_proxy = env_flag(TRUST_PROXY_ENV) if trust_proxy is None else trust_proxy
        hours = os.environ.get(SESSION_HOURS_ENV)
        self.session_ttl = session_ttl or (timedelta(hours=float(hours)) if hours
                                           else DEFAULT_TTL)
        self.sign_ins = SignInLimits()  # failed sign-ins, kept across reloads
        self.scorer = ChildScorer("forkserver")
        self._lock = threading.Lock()
        self._refused: tuple[int, int, int] | None = None
        # Called with the new board after competition.yaml was read again (for whatever holds
        # the board beside the requests, e.g. a scoring dispatcher).
        self.on_reload: list[Callable[[Board], None]] = []
        self._loaded = self._load(self._signature())
        # Scoring never happens in a request: accepted uploads are queued, and the
        # dispatcher (started with the first upload, or by the app's startup) runs them.
        self.runner = runner or ThreadRunner(2)
        self.dispatcher = Dispatcher(self.board, self.runner, store_url, scorer_spec)
        self.on_reload.append(self.dispatcher.rebind)
        # Uploads being received: slots and temporary space (kept across reloads).
        self.uploads = UploadSlots()

    # --- the competition, re-read when its configuration changes ---------------------------

    @property
    def config_path(self) -> Path:
        return self.directory / "competition.yaml"

    def _signature(self) -> tuple[int, int, int]:
        stat = self.config_path.stat()
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def _load(self, signature: tuple[int, int, int]) -> _Loaded:
        comp = PreparedCompetition.open(self.directory)
        board = Board(comp, url=self.store_url, scorer=self.scorer)
        return _Loaded(signature, comp, board, Sessions(board.ctx, board.teams))

    def stale(self) -> bool:
        """Whether competition.yaml changed since it was read (one stat)."""
        try:
            signature = self._signature()
        except OSError:
            return False  # being replaced right now: keep the rules in force
        return signature != self._loaded.signature and signature != self._refused

    def reload(self) -> None:
        with self._lock:
            signature = None
            try:
                signature = self._signature()
                if signature in (self._loaded.signature, self._refused):
                    return
                old, self._loaded = self._loaded, self._load(signature)
                self._refused = None
            except Exception as e:  # whatever the new file breaks, the portal keeps serving
                self._refused = signature
                log.error("competition.yaml changed but cannot be used (the earlier rules "
                          "stay in force): %s", e)
                return
        log.info("competition.yaml changed: the new rules are in force")
        # Requests under way keep their connections; the old pool is closed as they return.
        old.board.engine.dispose()
        for listener in self.on_reload:
            listener(self.board)

    @property
    def comp(self) -> PreparedCompetition:
        return self._loaded.comp

    @property
    def board(self) -> Board:
        return self._loaded.board

    @property
    def sessions(self) -> Sessions:
        return self._loaded.sessions

    @property
    def public_root(self) -> Path:
        return self.comp.public_dir.resolve()

    # --- scoring jobs ----------------------------------------------------------------------

    def start_jobs(self) -> None:
        with self._lock:
            if not self.dispatcher.started:
                self.dispatcher.start()

    def stop_jobs(self) -> None:
        self.dispatcher.stop()
        self.runner.close()

    def queued(self) -> None:
        """An upload was queued: make sure jobs run, and look now."""
        self.start_jobs()
        self.dispatcher.wake()

    async def outcome_within(self, submission_id: int, team: str, seconds: float) -> Outcome:
        """The submission's outcome once it is final, or as it stands after `seconds`
        (polled in the store: no thread waits on the scoring)."""
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            found = await run_in_threadpool(self.board.submissions.outcome_of, submission_id,
                                            team)
            if found.status not in WAITING or asyncio.get_running_loop().time() >= deadline:
                return found
            await asyncio.sleep(0.2)

    # --- public files ----------------------------------------------------------------------

    def public_files(self) -> list[str]:
        root = self.public_root
        return sorted(p.relative_to(root).as_posix()
                      for p in root.rglob("*") if p.is_file() and not p.is_symlink())

    def public_path(self, path: str) -> Path | None:
        """`path` resolved inside public/, or None (outside it, too long, not a name)."""
        if "\x00" in path or len(path) > 1000 or \
                any(len(part.encode()) > 255 for part in path.split("/")):
            return None
        root = self.public_root
        try:
            target = (root / path).resolve()
        except (OSError, ValueError):
            return None
        return target if target.is_relative_to(root) else None

    def public_file(self, path: str) -> Path | None:
        """A file under public/, or None (nothing outside it, no links)."""
        target = self.public_path(path)
        try:
            return target if target is not None and target.is_file() else None
        except OSError:
            return None

    # --- boards and exports ----------------------------------------------------------------

    def board_entries(self, private: bool) -> list[Entry]:
        return leaderboard.private_board(self.board) if private else \
            leaderboard.public_board(self.board)

    def may_see_private(self, viewer: Viewer | None) -> bool:
        return self.board.private_visible or (viewer is not None and viewer.role == "organizer")

    def outcome_json(self, outcome: Outcome, viewer: Viewer | None) -> dict[str, Any]:
        return outcome.as_json(self.may_see_private(viewer))

    def grades_csv(self) -> str:
        """Each participating team's final private score and rank among participants
        (the organizers' baselines are left out, and so are their ranks)."""
        public_order = [e.team for e in leaderboard.public_board(self.board) if not e.baseline]
        students = [e for e in leaderboard.private_board(self.board) if not e.baseline]
        return csv_text(["rank", "team", "private_score", "submission_id", "public_rank"], [
            [rank, e.team, e.score, e.submission_id,
             public_order.index(e.team) + 1 if e.team in public_order else None]
            for rank, e in enumerate(students, 1)])

    def submissions_csv(self) -> str:
        """Every submission with its team, scores, message and error (organizers)."""
        columns = ["id", "team", "submitted_at", "file_name", "status", "public_score",
                   "private_score", "message", "error"]
        return csv_text(columns, [
            [r["id"], r["team"], r["submitted_at"].isoformat() + "Z", r["file_name"],
             r["status"], r["public_score"], r["private_score"], r["message"], r["error"]]
            for r in self.board.submissions.all()])

    # --- requests --------------------------------------------------------------------------

    def is_https(self, request: Request) -> bool:
        """Served over HTTPS, or behind a trusted proxy that says the browser used HTTPS."""
        if request.url.scheme == "https":
            return True
        forwarded = request.headers.get("x-forwarded-proto", "")
        return self.trust_proxy and forwarded.split(",")[0].strip().lower() == "https"

    def own_origin(self, request: Request) -> str:
        scheme = "https" if self.is_https(request) else "http"
        host = request.headers.get("host", "")
        if self.trust_proxy and request.headers.get("x-forwarded-host"):
            host = request.headers["x-forwarded-host"].split(",")[0].strip()
        return _normal_origin(f"{scheme}://{host}")

    def cookie_name(self, request: Request, name: str) -> str:
        # Over HTTPS the `__Host-` prefix makes the browser refuse the cookie unless it is
        # Secure, host-only and for path /: a page on another port or a subdomain cannot
        # plant one.
        return f"__Host-{name}" if self.is_https(request) else name

    def set_cookie(self, response: Any, request: Request, name: str, value: str,
                   max_age: int | None = None) -> None:
        response.set_cookie(self.cookie_name(request, name), value, max_age=max_age, path="/",
                            httponly=True, samesite="strict", secure=self.is_https(request))

    def delete_cookie(self, response: Any, request: Request, name: str) -> None:
        response.delete_cookie(self.cookie_name(request, name), path="/", httponly=True,
                               samesite="strict", secure=self.is_https(request))


def _normal_origin(origin: str) -> str:
    """scheme://host[:port] in lower case, without the scheme's default port."""
    parts = urlsplit(origin.strip().lower())
    try:
        port = parts.port
    except ValueError:
        return "invalid"
    default = {"http": 80, "https": 443}.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def refusal_status(error: CompetitionError) -> int:
    if isinstance(error, LimitReached):
        return 429
    if isinstance(error, Closed):
        return 403
    return 400


def portal(request: Request) -> Portal:
    found: Portal = request.app.state.portal
    return found


def viewer(request: Request) -> Viewer | None:
    """Who is asking (resolved once per request: the answer is kept in the request's
    state, which every Request object of the request shares)."""
    state = request.state
    if getattr(state, "viewer_resolved", False):
        found: Viewer | None = state.viewer
        return found
    p = portal(request)
    header = request.headers.get("authorization", "")
    result: Viewer | None = None
    if header.lower().startswith("bearer "):
        token = header[7:].strip()
        who = p.board.teams.who(token)
        if who is not None:
            result = Viewer(role=who[0], team=who[1])
        else:
            # An unknown bearer token is a failed sign-in (sign_in_limits.py): counted, or
            # over the limits a 429.
            refusal = p.sign_ins.refused(client_address(request, p.trust_proxy), token,
                                         p.comp.config.portal)
            if refusal is not None and (
                    request.url.path.startswith("/api/") or
                    "text/html" not in request.headers.get("accept", "text/html")):
                state.viewer, state.viewer_resolved = None, True
                # (A page is served as to nobody instead: its error pages ask who is viewing
                # from the app's error handler, where a 429 would become a 500.)
                raise HTTPException(429, refusal.message,
                                    headers={"Retry-After": str(refusal.retry_after)})
    else:
        session = p.sessions.get(request.cookies.get(p.cookie_name(request, SESSION_COOKIE)))
        if session is not None:
            result = Viewer(role=session.role, team=session.team, via="session",
                            csrf_token=session.csrf_token)
    state.viewer, state.viewer_resolved = result, True
    return result


def csrf_valid(request: Request, supplied: str | None) -> bool:
    """A token from the request matches: the session's when signed in by cookie, else the
    login form's (the value of the pre-session cookie, which only this portal's pages, read
    by the browser, carry: a page of another origin can neither read it nor, past the
    Origin check, submit it). Requests with a bearer token need none."""
    v = viewer(request)
    if v is not None and v.via == "token":
        return True
    if v is not None:
        expected = v.csrf_token
    else:
        p = portal(request)
        expected = request.cookies.get(p.cookie_name(request, CSRF_COOKIE))
    return bool(expected and supplied) and hmac.compare_digest(str(expected).encode(),
                                                               str(supplied).encode())


CSRF_REFUSED = ("the form has expired or did not come from this portal's own page: reload "
                "the page and try again")


async def form_field(request: Request, name: str) -> str | None:
    """A small form's field (the body is capped by the guard; FastAPI has already parsed the
    form of routes that declare fields, and Starlette keeps it)."""
    form: FormData = await request.form()
    value = form.get(name)
    return value if isinstance(value, str) else None


async def signed_in(request: Request) -> Viewer:
    v = await run_in_threadpool(viewer, request)
    if v is None:
        raise HTTPException(401, "a valid team or organizer token is needed")
    # A cookie is sent by the browser whoever made the page: a state change on its strength
    # needs the session's CSRF token. (Uploads check theirs while streaming, before the file.)
    if v.via == "session" and request.method in UNSAFE_METHODS and \
            request.url.path not in UPLOAD_PATHS:
        supplied = request.headers.get(CSRF_HEADER) or await form_field(request, CSRF_FIELD)
        if not csrf_valid(request, supplied):
            raise HTTPException(403, CSRF_REFUSED)
    return v


def upload_csrf(request: Request) -> Callable[[dict[str, str]], None]:
    """What an upload checks when its file part begins: with a cookie session, the CSRF token
    (the `X-CSRF-Token` header, or the form's field sent before the file)."""
    def check(fields: dict[str, str]) -> None:
        supplied = request.headers.get(CSRF_HEADER) or fields.get(CSRF_FIELD)
        if not csrf_valid(request, supplied):
            raise HTTPException(403, CSRF_REFUSED)

    return check


def same_origin(request: Request) -> None:
    """Every state-changing request: an `Origin` (or, without one, a `Referer`) naming
    another origin, the same host on another port included, is refused."""
    if request.method not in UNSAFE_METHODS:
        return
    p = portal(request)
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer")
        if not referer:
            return  # not from a browser page (scripts, the CLI): tokens decide
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    own = p.own_origin(request)
    if origin.strip().lower() == "null" or _normal_origin(origin) != own:
        raise HTTPException(403, f"a request from another site ({origin[:100]}) may not change "
                                 f"anything here; use this portal's own pages ({own})")


def team_only(v: Annotated[Viewer, Depends(signed_in)]) -> Viewer:
    if v.role != "team":
        raise HTTPException(403, "this action belongs to a team (use a team token)")
    return v


def organizer_only(v: Annotated[Viewer, Depends(signed_in)]) -> Viewer:
    if v.role != "organizer":
        raise HTTPException(403, "organizers only")
    return v


PortalDep = Annotated[Portal, Depends(portal)]
SignedIn = Annotated[Viewer, Depends(signed_in)]
TeamOnly = Annotated[Viewer, Depends(team_only)]
OrganizerOnly = Annotated[Viewer, Depends(organizer_only)]


def page(request: Request, name: str, status: int = 200, **context: Any) -> Any:
    """A server-rendered page with what every page shows, and the CSRF token its forms carry
    (the session's; before sign-in, a fresh pre-session token set as a cookie)."""
    p = portal(request)
    v = viewer(request)
    new_token = None
    if v is not None and v.via == "session":
        token = v.csrf_token
    else:
        token = request.cookies.get(p.cookie_name(request, CSRF_COOKIE))
        if not token or len(token) > 100:
            token = new_token = secrets.token_urlsafe(32)
    response = TEMPLATES.TemplateResponse(request, name, {
        "comp": p.comp, "viewer": v, "rules": p.board.rules, "csrf_token": token or "",
        "deadline_passed": p.board.private_visible, **context}, status_code=status)
    if new_token is not None:
        p.set_cookie(response, request, CSRF_COOKIE, new_token)
    return response


def error_page(request: Request, status: int, detail: Any) -> Any:
    return page(request, "error.html", status, code=status, detail=detail)


def safe_file_name(name: str) -> str:
    return "".join(c for c in name if c.isalnum() or c in "._-")[:100] or "file"
