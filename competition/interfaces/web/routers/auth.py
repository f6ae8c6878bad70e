"""Signing in and out of the pages (the API takes a bearer token instead).

Signing in exchanges the token for a server-side session (see competition.board.sessions):
the cookie holds the session's random id, never the token. The login form carries a CSRF
token (the value of a pre-session cookie), so another site cannot sign a browser into a team
of its choosing; signing out revokes the session in the store, so a copy of the cookie stops
working too. Sign-ins are limited per client address and per token prefix (see
sign_in_limits.py): past a limit the form answers 429 without looking at the token.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from competition.interfaces.web.dependencies import PortalDep, csrf_valid, form_field, viewer
from competition.interfaces.web.prefix import url
from competition.interfaces.web.rendering import error_page, page
from competition.interfaces.web.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    CSRF_REFUSED,
    SESSION_COOKIE,
)
from competition.interfaces.web.sign_in_limits import client_address

router = APIRouter(include_in_schema=False)
MAX_TOKEN_CHARS = 200


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Any:
    return page(request, "login.html")


@router.post("/login")
def login(request: Request, p: PortalDep, token: Annotated[str, Form(max_length=500)],
          csrf_token: Annotated[str, Form(max_length=200)] = "") -> Any:
    if not csrf_valid(request, csrf_token):
        return page(request, "login.html", status=403, error=CSRF_REFUSED)
    token = token.strip()
    opened = p.sessions.open(token, p.session_ttl) if len(token) <= MAX_TOKEN_CHARS else None
    if opened is None:  # a failed sign-in: counted, or over the limits a 429
        refusal = p.sign_ins.refused(client_address(request, trust_proxy=p.site.trust_proxy),
                                     token, p.comp.config.portal)
        if refusal is not None:
            refused = page(request, "login.html", status=429, error=refusal.message)
            refused.headers["Retry-After"] = str(refusal.retry_after)
            return refused
        return page(request, "login.html", status=401, error="unknown token")
    p.sessions.revoke(p.site.cookie(request, SESSION_COOKIE))
    session_id, _ = opened
    response = RedirectResponse(url(request, "/"), status_code=303)
    p.site.set_cookie(response, request, SESSION_COOKIE, session_id,
                      max_age=int(p.session_ttl.total_seconds()))
    p.site.delete_cookie(response, request, CSRF_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request, p: PortalDep) -> Any:
    v = await run_in_threadpool(viewer, request)
    if v is not None and v.via == "session":
        supplied = await form_field(request, CSRF_FIELD)
        if not csrf_valid(request, supplied):
            return await run_in_threadpool(error_page, request, 403, CSRF_REFUSED)
        await run_in_threadpool(p.sessions.revoke, p.site.cookie(request, SESSION_COOKIE))
    response = RedirectResponse(url(request, "/leaderboard"), status_code=303)
    p.site.delete_cookie(response, request, SESSION_COOKIE)
    return response
