"""The participants' JSON API (`Authorization: Bearer TOKEN`): the same actions as the pages.
With the session cookie instead, a state-changing call needs the `X-CSRF-Token` header."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from competition.board import rule_edits
from competition.board.context import RuleError
from competition.board.status import WAITING
from competition.board.views import Entry, LateEntry, Outcome
from competition.errors import SubmissionError
from competition.interfaces.web.catalog import competition_summary
from competition.interfaces.web.dependencies import (
    FileViewer,
    PortalDep,
    SignedIn,
    TeamOnly,
    unpublished,
    upload_csrf,
)
from competition.interfaces.web.exports import safe_file_name
from competition.interfaces.web.guard import admitted_upload, refusal_status
from competition.interfaces.web.prefix import url
from competition.interfaces.web.publish import stream_zip
from competition.interfaces.web.routers.pages import SubmissionId
from competition.interfaces.web.schemas import (
    ERRORS,
    CompetitionOut,
    CompetitionSummary,
    ErrorOut,
    PublicFile,
)
from competition.interfaces.web.uploads import UPLOAD_SCHEMA, received_upload

router = APIRouter(prefix="/api")
MAX_WAIT_SECONDS = 120


@router.get("/competition", response_model=CompetitionOut, responses=ERRORS)
def api_competition(p: PortalDep, v: SignedIn) -> Any:
    # JSON's own types: numbers as numbers, times as ISO 8601 strings, unset as null.
    rules = p.comp.rules.model_dump(mode="json")
    return CompetitionOut(name=p.comp.name, title=p.comp.title, task=p.comp.task.name,
                          metric=p.comp.task.metric, rules=rules,
                          deadline_passed=p.board.private_visible,
                          public_files=[] if unpublished(p, v) else p.public_files(),
                          rule_changes=rule_edits.history_json(
                              rule_edits.history(p.board.engine), who=False))


@router.get("/competitions", response_model=list[CompetitionSummary])
def api_competitions(request: Request, p: PortalDep) -> Any:
    """The competitions served here (public, like the leaderboard): this one alone, or in a
    course this one as the course's list has it (the course's own `/api/competitions` lists
    them all)."""
    slug = p.slug or p.directory.resolve().name
    return [competition_summary(p.comp, slug, url(request, "/"))]


@router.get("/files", response_model=list[PublicFile], responses=ERRORS)
def api_files(p: PortalDep, v: FileViewer) -> Any:
    """The public files with their sizes: what `/api/files.zip` holds (a client shows its
    progress and checks for files it would overwrite before downloading)."""
    return [PublicFile(path=f, size=(p.public_root / f).stat().st_size)
            for f in p.public_files()]


@router.get("/files.zip", responses={**ERRORS, 200: {"content": {"application/zip": {}}}})
def api_files_zip(p: PortalDep, v: FileViewer) -> Any:
    """Every public file in one zip, streamed (the page `/files.zip` behind a token)."""
    name = f"{safe_file_name(p.comp.name)}-public.zip"
    return StreamingResponse(stream_zip(p.public_root, p.public_files()),
                             media_type="application/zip",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/leaderboard", response_model=list[Entry])
def api_leaderboard(p: PortalDep) -> Any:
    return [e.as_json() for e in p.board_entries(private=False)]


@router.get("/leaderboard/private", response_model=list[Entry], responses=ERRORS)
def api_private_leaderboard(p: PortalDep, v: SignedIn) -> Any:
    if not p.may_see_private(v):
        raise HTTPException(403, "the private leaderboard opens at the deadline")
    return [e.as_json() for e in p.board_entries(private=True)]


@router.get("/leaderboard/late", response_model=list[LateEntry], responses=ERRORS)
def api_late_leaderboard(p: PortalDep, v: SignedIn) -> Any:
    """Submissions made after the deadline (rule `late_submissions`), oldest first, with
    their public and private scores: never ranked."""
    return JSONResponse(p.late_json(v))


# exclude_unset: before the deadline `private_score` is absent, not null. The body is not
# declared as parameters: FastAPI would parse (and spool) it before the token is checked; the
# route streams it itself, after the dependencies (see uploads.py).
@router.post("/submissions", response_model=Outcome, status_code=202,
             response_model_exclude_unset=True, openapi_extra=UPLOAD_SCHEMA,
             responses={**ERRORS, 201: {"model": Outcome}, 413: {"model": ErrorOut},
                        415: {"model": ErrorOut}, 422: {"model": Outcome},
                        429: {"model": ErrorOut}})
async def api_submit(request: Request, p: PortalDep, v: TeamOnly,
                     wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 0) -> Any:
    """Accept a file: 202 with the queued submission and its address at once (scoring runs
    as a job); with `wait=SECONDS`, the final outcome if it comes within that time (201
    scored, 422 invalid), else still 202."""
    assert v.team is not None
    # The team's limits and a slot before the body; the body's bytes then grow its space.
    async with (admitted_upload(request, p, v.team) as reservation,
                received_upload(request, p.comp.max_submission_bytes,
                                p.comp.rules.max_message_chars, upload_csrf(request),
                                on_bytes=reservation.grow,
                                idle_seconds=p.comp.config.portal.upload_idle_seconds) as upload):
        try:
            outcome = await run_in_threadpool(p.board.submissions.submit, upload.path, v.team,
                                              upload.message, baseline=False,
                                              queue=True, create_team=False)
        except RuleError as e:
            raise HTTPException(refusal_status(e), str(e)) from None
        except SubmissionError as e:  # empty file, size: refused before storing
            raise HTTPException(400, str(e)) from None
    if outcome.status in WAITING:
        p.queued()
        if wait:
            outcome = await p.outcome_within(outcome.id, v.team, wait)
    return JSONResponse(p.outcome_json(outcome, v), status_code=outcome_status(outcome),
                        headers={"Location": url(request, f"/api/submissions/{outcome.id}")})


def outcome_status(outcome: Outcome) -> int:
    if outcome.status in WAITING:
        return 202
    return 422 if outcome.status == "invalid" else 201


@router.get("/submissions/{submission_id}", response_model=Outcome, responses=ERRORS,
            response_model_exclude_unset=True)
def api_submission(submission_id: SubmissionId, p: PortalDep, v: TeamOnly) -> Any:
    """One of the team's submissions: `queued`, `scoring`, then its outcome."""
    assert v.team is not None
    try:
        return JSONResponse(p.outcome_json(p.board.submissions.outcome_of(submission_id,
                                                                          v.team), v))
    except RuleError:
        raise HTTPException(404, "no such submission") from None


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
    path = p.comp.root / row["file_path"]
    if not path.is_file():  # refused uploads' files are not kept
        raise HTTPException(404, "the file of this submission is not kept")
    return FileResponse(path, media_type="application/octet-stream",
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
