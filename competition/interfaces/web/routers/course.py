"""A course's own pages and API: the home page (its competitions, open, upcoming and
closed), `GET /api/competitions`, and one sign-in for every competition of the course.

Signing in with a token opens a session in each competition whose store knows the token (a
student's roster token, imported into several competitions at once, is known to all of them;
a team's token to its own competition only), each under that competition's own cookie (see
security.Site.scope): a session of one competition is never one of another. Signing out ends
them all. The CSRF token and the limits on failed sign-ins work as a competition's own do
(routers/auth.py, sign_in_limits.py); a token no competition knows is refused alike.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from competition.board.rules import utcnow
from competition.board.sessions import Session
from competition.interfaces.web.catalog import competition_summary
from competition.interfaces.web.course_organizer import (
    COURSE_ORGANIZER_COOKIE,
    course_organizer_of,
)
from competition.interfaces.web.course_state import COURSE_PREFIX, Course, course_of
from competition.interfaces.web.dependencies import form_field
from competition.interfaces.web.prefix import base
from competition.interfaces.web.rendering import TEMPLATES
from competition.interfaces.web.routers.auth import MAX_TOKEN_CHARS
from competition.interfaces.web.schemas import CompetitionSummary
from competition.interfaces.web.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    CSRF_REFUSED,
    MAX_CSRF_CHARS,
    SESSION_COOKIE,
    new_csrf_token,
    tokens_match,
)
from competition.interfaces.web.sign_in_limits import client_address

router = APIRouter()
GROUPS = ("open", "upcoming", "closed")


def summaries(request: Request, course: Course) -> list[CompetitionSummary]:
    now = utcnow()
    return [competition_summary(p.comp, slug, f"{base(request)}{COURSE_PREFIX}{slug}/", now)
            for slug, p in course.fresh().items()]


def sessions_of(request: Request, course: Course) -> dict[str, Session]:
    """The live sessions this browser holds, by competition."""
    found: dict[str, Session] = {}
    for slug, p in course.portals.items():
        session = p.sessions.get(p.site.cookie(request, SESSION_COOKIE))
        if session is not None:
            found[slug] = session
    return found


def render(request: Request, name: str, status: int = 200, **context: Any) -> Any:
    """A course page, with the CSRF token of its forms: a live session's (sign-out), else
    the course's pre-session token (sign-in), set as a cookie when new."""
    course = course_of(request)
    sessions = sessions_of(request, course)
    organizing = course_organizer_of(request, course.organizer, course.site)
    new_token = None
    if organizing is not None and organizing.via == "session":
        token: str | None = organizing.csrf_token
    elif sessions:
        token = next(iter(sessions.values())).csrf_token
    else:
        token = course.site.cookie(request, CSRF_COOKIE)
        if not token or len(token) > MAX_CSRF_CHARS:
            token = new_token = new_csrf_token()
    response = TEMPLATES.TemplateResponse(request, name, {
        "base": base(request), "sessions": sessions, "csrf_token": token or "",
        "course_organizer": organizing is not None,
        "creating": course.creator is not None, **context},
        status_code=status)
    if new_token is not None:
        course.site.set_cookie(response, request, CSRF_COOKIE, new_token)
    if sessions:  # as a competition's signed-in pages (rendering.page): kept by no cache
        response.headers["Cache-Control"] = "no-store"
    return response


def error_page(request: Request, status: int, detail: Any) -> Any:
    return render(request, "course_error.html", status, code=status, detail=detail)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def course_home(request: Request) -> Any:
    listed = summaries(request, course_of(request))
    groups = {g: [s for s in listed if s.status == g] for g in GROUPS}
    return render(request, "course_home.html", groups=groups)


@router.get("/api/competitions", response_model=list[CompetitionSummary])
def api_competitions(request: Request) -> Any:
    """Every competition of the course (public: titles and dates only)."""
    return summaries(request, course_of(request))


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def course_login_form(request: Request) -> Any:
    return render(request, "course_login.html")


def _csrf_valid(request: Request, course: Course, supplied: str | None) -> bool:
    """The form's token is the course's pre-session one, or that of a session it holds."""
    expected = [course.site.cookie(request, CSRF_COOKIE)]
    expected += [s.csrf_token for s in sessions_of(request, course).values()]
    organizing = course_organizer_of(request, course.organizer, course.site)
    if organizing is not None:
        expected.append(organizing.csrf_token)
    return any(tokens_match(e, supplied) for e in expected)


@router.post("/login", include_in_schema=False)
def course_login(request: Request, token: Annotated[str, Form(max_length=500)],
                 csrf_token: Annotated[str, Form(max_length=200)] = "") -> Any:
    course = course_of(request)
    if not _csrf_valid(request, course, csrf_token):
        return render(request, "course_login.html", status=403, error=CSRF_REFUSED)
    token = token.strip()
    opened: dict[str, str] = {}
    organizer_session = None
    if len(token) <= MAX_TOKEN_CHARS:
        for slug, p in course.fresh().items():
            found = p.sessions.open(token, p.session_ttl)
            if found is not None:
                opened[slug] = found[0]
        if course.organizer is not None:
            organizer_session = course.organizer.open(token)
    # A failed sign-in: counted once for the course, or over the limits 429.
    if not opened and organizer_session is None:
        refusal = course.sign_ins.refused(
            client_address(request, trust_proxy=course.site.trust_proxy), token,
            course.sign_in_rules())
        if refusal is not None:
            refused = render(request, "course_login.html", status=429, error=refusal.message)
            refused.headers["Retry-After"] = str(refusal.retry_after)
            return refused
        return render(request, "course_login.html", status=401, error="unknown token")
    # One person at a time in this browser: the sessions held before end everywhere, and
    # competitions the new token is unknown to are signed out of.
    response = RedirectResponse(f"{base(request)}/" + ("organizer" if organizer_session
                                                       else ""), status_code=303)
    if course.organizer is not None:
        course.organizer.revoke(course.site.cookie(request, COURSE_ORGANIZER_COOKIE))
        if organizer_session is not None:
            course.site.set_cookie(response, request, COURSE_ORGANIZER_COOKIE,
                                   organizer_session,
                                   max_age=int(course.organizer.ttl_seconds))
        else:
            course.site.delete_cookie(response, request, COURSE_ORGANIZER_COOKIE)
    for slug, p in course.portals.items():
        p.sessions.revoke(p.site.cookie(request, SESSION_COOKIE))
        if slug in opened:
            p.site.set_cookie(response, request, SESSION_COOKIE, opened[slug],
                              max_age=int(p.session_ttl.total_seconds()))
        else:
            p.site.delete_cookie(response, request, SESSION_COOKIE)
    course.site.delete_cookie(response, request, CSRF_COOKIE)
    return response


@router.post("/logout", include_in_schema=False)
async def course_logout(request: Request) -> Any:
    """Ends the browser's session in every competition of the course."""
    course = course_of(request)
    held = await run_in_threadpool(sessions_of, request, course)
    organizing = await run_in_threadpool(course_organizer_of, request, course.organizer,
                                         course.site)
    if held or organizing is not None:
        supplied = await form_field(request, CSRF_FIELD)
        if not await run_in_threadpool(_csrf_valid, request, course, supplied):
            return await run_in_threadpool(error_page, request, 403, CSRF_REFUSED)
    response = RedirectResponse(f"{base(request)}/", status_code=303)
    if course.organizer is not None:
        course.organizer.revoke(course.site.cookie(request, COURSE_ORGANIZER_COOKIE))
        course.site.delete_cookie(response, request, COURSE_ORGANIZER_COOKIE)
    for p in course.portals.values():
        await run_in_threadpool(p.sessions.revoke, p.site.cookie(request, SESSION_COOKIE))
        p.site.delete_cookie(response, request, SESSION_COOKIE)
    return response


@router.api_route("/c/{slug}", methods=["GET", "HEAD", "POST"], include_in_schema=False)
@router.api_route("/c/{slug}/{rest:path}", methods=["GET", "HEAD", "POST"],
                  include_in_schema=False)
def unknown_competition(request: Request, slug: str) -> Any:
    """Only paths of no competition get here (each competition's mount is matched first),
    and a competition's address without its final slash (redirected)."""
    course = course_of(request)
    if slug in course.portals and request.url.path.rstrip("/").endswith(f"/c/{slug}"):
        return RedirectResponse(f"{base(request)}{COURSE_PREFIX}{slug}/", status_code=307)
    known = ", ".join(course.portals)
    raise HTTPException(404, f"this course has no competition {slug[:100]!r} (it has: {known})")
