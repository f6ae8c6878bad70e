"""Server-rendered pages: the templates, with what every page shows and the CSRF token its
forms carry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates

from competition.interfaces.web.dependencies import portal, viewer
from competition.interfaces.web.prefix import base, course_root
from competition.interfaces.web.security import CSRF_COOKIE, MAX_CSRF_CHARS, new_csrf_token

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def page(request: Request, name: str, status: int = 200, **context: Any) -> Any:
    """A server-rendered page with what every page shows, and the CSRF token its forms carry
    (the session's; before sign-in, a fresh pre-session token set as a cookie)."""
    p = portal(request)
    v = viewer(request)
    new_token = None
    if v is not None and v.via == "session":
        token = v.csrf_token
    else:
        token = p.site.cookie(request, CSRF_COOKIE)
        if not token or len(token) > MAX_CSRF_CHARS:
            token = new_token = new_csrf_token()
    response = TEMPLATES.TemplateResponse(request, name, {
        "comp": p.comp, "viewer": v, "rules": p.board.rules, "csrf_token": token or "",
        "deadline_passed": p.board.private_visible, **links(request, p.in_course),
        **context}, status_code=status)
    if new_token is not None:
        p.site.set_cookie(response, request, CSRF_COOKIE, new_token)
    if v is not None:
        # A signed-in page (a team's submissions, a new invitation code, a new team token) is
        # kept by no cache: on a shared lab computer, Back after signing out must not show
        # it to the next student.
        response.headers["Cache-Control"] = "no-store"
    return response


def error_page(request: Request, status: int, detail: Any) -> Any:
    return page(request, "error.html", status, code=status, detail=detail)


def links(request: Request, in_course: bool) -> dict[str, str | None]:
    """Where a competition's pages link to: its own pages under its prefix; in a course, the
    course's home, and the course's one sign-in and sign-out (which act on every
    competition of the course at once)."""
    here = base(request)
    if not in_course:
        return {"base": here, "course_url": None, "signin_url": f"{here}/login",
                "signout_url": f"{here}/logout"}
    course = course_root(request)
    return {"base": here, "course_url": f"{course}/", "signin_url": f"{course}/login",
            "signout_url": f"{course}/logout"}
