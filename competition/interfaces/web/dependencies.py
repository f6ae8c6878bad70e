"""The dependencies the routes declare: the portal's state, who is asking (a team, the
organizer, or nobody), and the checks a state-changing request passes (its origin, and with a
cookie session its CSRF token). The mechanics are security.py's; the state is state.py's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from competition.board.teams import token_hash
from competition.interfaces.web.prefix import local_path
from competition.interfaces.web.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    CSRF_REFUSED,
    SESSION_COOKIE,
    UNSAFE_METHODS,
    Viewer,
    bearer_token,
    check_same_origin,
    tokens_match,
)
from competition.interfaces.web.sign_in_limits import client_address
from competition.interfaces.web.state import Portal
from competition.interfaces.web.uploads import UPLOAD_PATHS


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
    token = bearer_token(request)
    result: Viewer | None = None
    if token is not None:
        who = p.board.teams.who(token)
        if who is not None:
            result = Viewer(role=who[0], team=who[1], credential=token_hash(token))
        else:
            # An unknown bearer token is a failed sign-in (sign_in_limits.py): counted, or
            # over the limits a 429.
            refusal = p.sign_ins.refused(
                client_address(request, trust_proxy=p.site.trust_proxy), token,
                p.comp.config.portal)
            if refusal is not None and (
                    local_path(request).startswith("/api/") or
                    "text/html" not in request.headers.get("accept", "text/html")):
                state.viewer, state.viewer_resolved = None, True
                # (A page is served as to nobody instead: its error pages ask who is viewing
                # from the app's error handler, where a 429 would become a 500.)
                raise HTTPException(429, refusal.message,
                                    headers={"Retry-After": str(refusal.retry_after)})
    else:
        session = p.sessions.get(p.site.cookie(request, SESSION_COOKIE))
        if session is not None:
            result = Viewer(role=session.role, team=session.team, via="session",
                            csrf_token=session.csrf_token, credential=session.credential)
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
    expected = v.csrf_token if v is not None else \
        portal(request).site.cookie(request, CSRF_COOKIE)
    return tokens_match(expected, supplied)


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
            local_path(request) not in UPLOAD_PATHS:
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
    check_same_origin(request, portal(request).site)


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


def unpublished(p: Portal, v: Viewer) -> str | None:
    """Why the public files are not yet this viewer's (None: they are). They are published
    when the competition opens, as its data appears on Kaggle at launch: before the rule
    `start` only the organizer sees them, so no team works on the data ahead of the others."""
    start = p.comp.rules.start
    if v.role != "organizer" and start is not None and p.board.ctx.now() < start:
        return f"the competition opens at {start.isoformat()}Z; its files are published then"
    return None


def file_viewer(p: PortalDep, v: SignedIn) -> Viewer:
    why = unpublished(p, v)
    if why is not None:
        raise HTTPException(403, why)
    return v


FileViewer = Annotated[Viewer, Depends(file_viewer)]
