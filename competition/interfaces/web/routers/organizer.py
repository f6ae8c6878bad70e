"""The organizer's page and API: teams and tokens, every submission, rescoring, grades.
CSV exports are spreadsheet-safe (competition.formats.csv_safe)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse

from competition.board import rule_edits
from competition.board.context import RuleError
from competition.errors import ConfigError
from competition.interfaces.web.dependencies import OrganizerOnly, PortalDep
from competition.interfaces.web.exports import grades_csv, safe_file_name, submissions_csv
from competition.interfaces.web.rendering import page
from competition.interfaces.web.schemas import ERRORS
from competition.interfaces.web.state import Portal

pages = APIRouter(prefix="/organizer", include_in_schema=False)
api = APIRouter(prefix="/api/organizer")


def _team_name(team: str) -> str:
    if not team.strip() or len(team) > 200:
        raise HTTPException(400, "a team name of 1 to 200 characters is needed")
    return team.strip()


def _issue_token(p: Portal, name: str) -> str:
    try:
        return p.board.teams.issue_token(name)
    except RuleError as e:  # e.g. a name too like an existing team's
        raise HTTPException(400, str(e)) from None


def _organizer(request: Request, p: Portal, **context: Any) -> Any:
    return page(request, "organizer.html", teams=p.board.teams.overview(),
                rows=p.board.submissions.all(), history=rule_edits.history(p.board.engine),
                **context)


@pages.get("", response_class=HTMLResponse)
def organizer_page(request: Request, p: PortalDep, v: OrganizerOnly) -> Any:
    return _organizer(request, p)


@pages.post("/token", response_class=HTMLResponse)
def organizer_issue_token(request: Request, p: PortalDep, v: OrganizerOnly,
                          team: Annotated[str, Form()]) -> Any:
    name = _team_name(team)
    token = _issue_token(p, name)
    return _organizer(request, p, issued=(name, token))


@pages.post("/rescore", response_class=HTMLResponse)
def organizer_rescore(request: Request, p: PortalDep, v: OrganizerOnly) -> Any:
    changes = p.board.rescoring.rescore()
    return _organizer(request, p, changes=changes)


def _grades(p: Portal) -> str:
    try:
        return grades_csv(p.board)
    except ConfigError as e:  # a grade rule that cannot be applied (e.g. a missing baseline)
        raise HTTPException(400, str(e)) from None


def _csv(text: str, name: str) -> PlainTextResponse:
    return PlainTextResponse(text, media_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{name}"'})


@pages.get("/grades.csv")
def organizer_grades(p: PortalDep, v: OrganizerOnly) -> Any:
    return _csv(_grades(p), f"{safe_file_name(p.comp.name)}-grades.csv")


@pages.get("/submissions.csv")
def organizer_submissions_csv(p: PortalDep, v: OrganizerOnly) -> Any:
    return _csv(submissions_csv(p.board), f"{safe_file_name(p.comp.name)}-submissions.csv")


@api.get("/submissions", responses=ERRORS)
def api_all_submissions(p: PortalDep, v: OrganizerOnly) -> Any:
    return [{**r, "submitted_at": r["submitted_at"].isoformat() + "Z"}
            for r in p.board.submissions.all()]


@api.post("/rescore", responses=ERRORS)
def api_rescore(p: PortalDep, v: OrganizerOnly) -> Any:
    return p.board.rescoring.rescore()


@api.get("/grades.csv", response_class=PlainTextResponse, responses=ERRORS)
def api_grades(p: PortalDep, v: OrganizerOnly) -> Any:
    return PlainTextResponse(_grades(p), media_type="text/csv")


@api.get("/submissions.csv", response_class=PlainTextResponse, responses=ERRORS)
def api_submissions_csv(p: PortalDep, v: OrganizerOnly) -> Any:
    return PlainTextResponse(submissions_csv(p.board), media_type="text/csv")


@api.post("/teams/{team}/token", responses=ERRORS)
def api_team_token(team: str, p: PortalDep, v: OrganizerOnly) -> Any:
    name = _team_name(team)
    return {"team": name, "token": _issue_token(p, name)}
