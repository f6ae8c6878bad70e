"""The participants' JSON API (`Authorization: Bearer TOKEN`): the same actions as the pages."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, UploadFile
from fastapi.responses import JSONResponse, Response

from competition.board.context import RuleError
from competition.board.views import Entry, Outcome
from competition.errors import SubmissionError
from competition.interfaces.web.portal import (
    PortalDep,
    SignedIn,
    TeamOnly,
    refusal_status,
    safe_file_name,
)
from competition.interfaces.web.routers.pages import SubmissionId
from competition.interfaces.web.schemas import ERRORS, CompetitionOut, ErrorOut

router = APIRouter(prefix="/api")


@router.get("/competition", response_model=CompetitionOut, responses=ERRORS)
def api_competition(p: PortalDep, v: SignedIn) -> Any:
    rules = p.comp.rules.model_dump(mode="json")
    return CompetitionOut(name=p.comp.name, title=p.comp.title, task=p.comp.task.name,
                          metric=p.comp.task.metric,
                          rules={k: None if val is None else str(val) for k, val in rules.items()},
                          deadline_passed=p.board.private_visible,
                          public_files=p.public_files())


@router.get("/leaderboard", response_model=list[Entry])
def api_leaderboard(p: PortalDep) -> Any:
    return [e.as_json() for e in p.board_entries(False)]


@router.get("/leaderboard/private", response_model=list[Entry], responses=ERRORS)
def api_private_leaderboard(p: PortalDep, v: SignedIn) -> Any:
    if not p.may_see_private(v):
        raise HTTPException(403, "the private leaderboard opens at the deadline")
    return [e.as_json() for e in p.board_entries(True)]


# exclude_unset: before the deadline `private_score` is absent, not null.
@router.post("/submissions", response_model=Outcome, status_code=201,
             response_model_exclude_unset=True,
             responses={**ERRORS, 413: {"model": ErrorOut}, 422: {"model": Outcome},
                        429: {"model": ErrorOut}})
async def api_submit(p: PortalDep, v: TeamOnly, file: Annotated[UploadFile, File()],
                     message: Annotated[str | None, Form()] = None) -> Any:
    from starlette.concurrency import run_in_threadpool

    data = await p.read_upload(file)
    assert v.team is not None
    try:
        outcome = await run_in_threadpool(p.submit_bytes, data, file.filename or "", v.team,
                                          message)
    except RuleError as e:
        raise HTTPException(refusal_status(e), str(e)) from None
    except SubmissionError as e:  # empty file, size: refused before storing
        raise HTTPException(400, str(e)) from None
    status = 422 if outcome.status == "invalid" else 201
    return JSONResponse(p.outcome_json(outcome, v), status_code=status)


@router.get("/submissions", response_model=list[Outcome], responses=ERRORS,
            response_model_exclude_unset=True)
def api_submissions(p: PortalDep, v: TeamOnly) -> Any:
    assert v.team is not None
    return JSONResponse([p.outcome_json(o, v) for o in p.board.submissions.of_team(v.team)])


@router.get("/submissions/{submission_id}/file", responses=ERRORS)
def api_submission_file(submission_id: SubmissionId, p: PortalDep, v: SignedIn) -> Any:
    row = p.board.submissions.get(submission_id)
    if row is None or (v.role == "team" and row["team"] != v.team):
        raise HTTPException(404, "no such submission")
    return Response((p.comp.root / row["file_path"]).read_bytes(),
                    media_type="application/octet-stream",
                    headers={"Content-Disposition":
                             f'attachment; filename="{safe_file_name(row["file_name"])}"'})


@router.post("/submissions/{submission_id}/select", response_model=list[int],
             responses=ERRORS)
def api_select(submission_id: SubmissionId, p: PortalDep, v: TeamOnly) -> Any:
    assert v.team is not None
    try:
        return p.board.selections.select(submission_id, v.team)
    except RuleError as e:
        raise HTTPException(400, str(e)) from None


@router.delete("/submissions/{submission_id}/select", status_code=204, responses=ERRORS,
               response_model=None)
def api_unselect(submission_id: SubmissionId, p: PortalDep, v: TeamOnly) -> Any:
    assert v.team is not None
    p.board.selections.unselect(submission_id, v.team)
    return Response(status_code=204)
