"""Signing in and out of the pages (the API takes a bearer token instead)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from competition.interfaces.web.portal import COOKIE, PortalDep, page

router = APIRouter(include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Any:
    return page(request, "login.html")


@router.post("/login")
def login(request: Request, p: PortalDep, token: Annotated[str, Form()]) -> Any:
    if p.board.teams.who(token.strip()) is None:
        return page(request, "login.html", status=401, error="unknown token")
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict")
    return response


@router.post("/logout")
def logout() -> Any:
    response = RedirectResponse("/leaderboard", status_code=303)
    response.delete_cookie(COOKIE)
    return response
