"""A student's team (team forming, issue 28): the Team page and its JSON API under
/api/team. The rules are competition.board.team_forming's; here only who asks (a student's
own token, by session or bearer) and how a refusal is answered (400, 403 once teams are
frozen, 404 for an invitation that is not the team's; the message names the problem).

Links start from `base` (web.prefix: the prefix the app is mounted under in a course), as
every page's do; `url_for` would resolve names through the course's outer router and fail."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from competition.board.context import RuleError
from competition.board.team_forming import NotAStudent, NotYours, UnknownCode
from competition.interfaces.web.dependencies import PortalDep, TeamOnly
from competition.interfaces.web.guard import refusal_status
from competition.interfaces.web.rendering import page
from competition.interfaces.web.schemas import ERRORS
from competition.interfaces.web.security import SESSION_COOKIE, Viewer
from competition.interfaces.web.state import Portal

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/team")
InvitationId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
Code = Annotated[str, Form(max_length=200)]


class CodeIn(BaseModel):
    code: str = Field(max_length=200)


def _status(error: RuleError) -> int:
    if isinstance(error, NotYours):
        return 404
    return 403 if isinstance(error, NotAStudent) else refusal_status(error)


def _credential(v: Viewer) -> str:
    assert v.credential is not None  # every signed-in team viewer has one
    return v.credential


def _json(view: dict[str, Any]) -> dict[str, Any]:
    def when(t: Any) -> str | None:
        return None if t is None else t.isoformat() + "Z"

    return {**view, "merger_deadline": when(view["merger_deadline"]),
            "deadline": when(view["deadline"]),
            "invitations": [{"id": i["id"], "created_by": i["created_by_name"],
                             "created_at": when(i["created_at"]),
                             "expires_at": when(i["expires_at"])}
                            for i in view["invitations"]]}


# --- the JSON API ---------------------------------------------------------------------------

@api.get("", responses=ERRORS)
def api_team(p: PortalDep, v: TeamOnly) -> Any:
    """The student's team: members, open invitations (without codes), the limits."""
    try:
        return _json(p.board.team_forming.view(_credential(v)))
    except RuleError as e:
        raise HTTPException(_status(e), str(e)) from None


@api.post("/invitations", status_code=201, responses=ERRORS)
def api_invite(p: PortalDep, v: TeamOnly) -> Any:
    """A new invitation code for the team: in this answer only (it is kept hashed)."""
    try:
        code, row = p.board.team_forming.invite(_credential(v))
    except RuleError as e:
        raise HTTPException(_status(e), str(e)) from None
    return {"code": code, "id": row["id"], "team": row["team"],
            "expires_at": row["expires_at"].isoformat() + "Z"}


@api.delete("/invitations/{invitation_id}", status_code=204, response_model=None,
            responses=ERRORS)
def api_revoke(invitation_id: InvitationId, p: PortalDep, v: TeamOnly) -> Any:
    try:
        p.board.team_forming.revoke(_credential(v), invitation_id)
    except RuleError as e:
        raise HTTPException(_status(e), str(e)) from None
    return Response(status_code=204)


def _guessing(p: Portal, v: Viewer, code: str | None) -> HTTPException | None:
    """A 429 for a student who tried too many unknown invitation codes lately (each counted
    once, by student: the sign-in limits' window, at most `sign_in_attempts_per_token_prefix`
    of them), refused before the code is tried; None otherwise. Codes are unguessable; this
    keeps a script from hammering the store's write lock with guesses."""
    if code is None:
        return None
    key = _credential(v)
    refusal = p.code_guesses.blocked(key, f"{key}\0{code.strip()}", p.comp.config.portal)
    if refusal is None:
        return None
    return HTTPException(429, f"too many unknown invitation codes tried lately: try again in "
                              f"{refusal.retry_after} s",
                         headers={"Retry-After": str(refusal.retry_after)})


def _attempt(p: Portal, v: Viewer, action: str, code: str | None) -> str:
    """The change (`join`, `merge` or `leave`); the team's name. An unknown code is counted
    (see `_guessing`)."""
    forming = p.board.team_forming
    try:
        if action == "leave":
            return forming.leave(_credential(v))
        assert code is not None
        return str(getattr(forming, action)(_credential(v), code))
    except UnknownCode:
        key = _credential(v)
        p.code_guesses.refused(key, f"{key}\0{code and code.strip()}", p.comp.config.portal)
        raise


def _api_change(p: Portal, v: Viewer, action: str, code: str | None) -> Any:
    refused = _guessing(p, v, code)
    if refused is not None:
        raise refused
    try:
        team = _attempt(p, v, action, code)
    except RuleError as e:
        raise HTTPException(_status(e), str(e)) from None
    return {"team": team}


@api.post("/join", responses=ERRORS)
def api_join(body: CodeIn, p: PortalDep, v: TeamOnly) -> Any:
    """Join the code's team alone (leaving the current one; submissions stay with it)."""
    return _api_change(p, v, "join", body.code)


@api.post("/merge", responses=ERRORS)
def api_merge(body: CodeIn, p: PortalDep, v: TeamOnly) -> Any:
    """Merge the whole current team (students, submissions) into the code's team."""
    return _api_change(p, v, "merge", body.code)


@api.post("/leave", responses=ERRORS)
def api_leave(p: PortalDep, v: TeamOnly) -> Any:
    """Leave for a new team of one, named after the student."""
    return _api_change(p, v, "leave", None)


# --- the Team page --------------------------------------------------------------------------

def _page(request: Request, p: Portal, v: Viewer, status: int = 200, **context: Any) -> Any:
    try:
        view = p.board.team_forming.view(_credential(v))
    except RuleError as e:  # a team's shared token: nothing to form
        return page(request, "team.html", status=_status(e) if status == 200 else status,
                    refusal=context.pop("refusal", None) or str(e), view=None, **context)
    return page(request, "team.html", status=status, view=view, **context)


@pages.get("/team", response_class=HTMLResponse)
def team_page(request: Request, p: PortalDep, v: TeamOnly) -> Any:
    return _page(request, p, v)


@pages.post("/team/invitations", response_class=HTMLResponse)
def invite_page(request: Request, p: PortalDep, v: TeamOnly) -> Any:
    try:
        code, row = p.board.team_forming.invite(_credential(v))
    except RuleError as e:
        return _page(request, p, v, _status(e), refusal=str(e))
    # Shown in this answer only: the store keeps its hash.
    return _page(request, p, v, 201, new_code=code, new_code_expires=row["expires_at"])


@pages.post("/team/invitations/{invitation_id}/revoke", response_class=HTMLResponse)
def revoke_page(request: Request, invitation_id: InvitationId, p: PortalDep,
                v: TeamOnly) -> Any:
    try:
        p.board.team_forming.revoke(_credential(v), invitation_id)
    except RuleError as e:
        return _page(request, p, v, _status(e), refusal=str(e))
    return _page(request, p, v, notice=f"invitation {invitation_id} revoked")


async def _page_change(request: Request, p: Portal, v: Viewer, action: str,
                       code: str | None) -> Any:
    refused = _guessing(p, v, code)
    if refused is not None:
        response = await run_in_threadpool(_page, request, p, v, refused.status_code,
                                           refusal=refused.detail)
        response.headers.update(refused.headers or {})
        return response
    held = await run_in_threadpool(p.sessions.held, p.site.cookie(request, SESSION_COOKIE))
    try:
        team = await run_in_threadpool(_attempt, p, v, action, code)
    except RuleError as e:
        return await run_in_threadpool(_page, request, p, v, _status(e), refusal=str(e))
    # The move ended this browser's session (it was the old team's): the student goes on
    # in a new one (a new id), for the new team.
    followed = None
    if held is not None and v.via == "session":
        followed = await run_in_threadpool(p.sessions.reopen, *held)
    response = page(request, "team_changed.html", team=team, action=action)
    if followed is not None:
        p.site.set_cookie(response, request, SESSION_COOKIE, followed[0],
                          max_age=int(p.session_ttl.total_seconds()))
    return response


@pages.post("/team/join", response_class=HTMLResponse)
async def join_page(request: Request, p: PortalDep, v: TeamOnly, code: Code) -> Any:
    return await _page_change(request, p, v, "join", code)


@pages.post("/team/merge", response_class=HTMLResponse)
async def merge_page(request: Request, p: PortalDep, v: TeamOnly, code: Code) -> Any:
    return await _page_change(request, p, v, "merge", code)


@pages.post("/team/leave", response_class=HTMLResponse)
async def leave_page(request: Request, p: PortalDep, v: TeamOnly) -> Any:
    return await _page_change(request, p, v, "leave", None)

