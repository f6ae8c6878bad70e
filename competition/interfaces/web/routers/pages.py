"""The participants' pages (server-rendered, no JavaScript): the competition, its files,
submitting, a team's submissions and final selections, the leaderboards."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from competition.board import rule_edits
from competition.board.context import RuleError
from competition.board.status import WAITING
from competition.errors import SubmissionError
from competition.interfaces.web.dependencies import (
    FileViewer,
    PortalDep,
    SignedIn,
    TeamOnly,
    unpublished,
    upload_csrf,
    viewer,
)
from competition.interfaces.web.exports import safe_file_name
from competition.interfaces.web.guard import admitted_upload, refusal_status
from competition.interfaces.web.prefix import url
from competition.interfaces.web.publish import description_html, folder_summary, stream_zip
from competition.interfaces.web.rendering import page
from competition.interfaces.web.uploads import UploadRefused, received_upload

router = APIRouter(include_in_schema=False)
# How long the submit page waits for a score before it says where the score will appear.
SUBMIT_PAGE_WAIT_SECONDS = 20
# Ids fit a database integer: anything larger is a 422, never a database error.
SubmissionId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]


@router.get("/", response_class=HTMLResponse)
def home(request: Request, p: PortalDep, v: SignedIn) -> Any:
    readme = p.comp.public_dir / "README.md"
    closed = unpublished(p, v)
    files = [] if closed else p.public_files()
    top, folders = folder_summary(files)
    size = sum((p.public_root / f).stat().st_size for f in files)
    return page(request, "home.html",
                description=description_html(readme.read_text()) if readme.exists() else "",
                top_files=top, folders=folders, n_files=len(files), total_mb=size / 1e6,
                unpublished=closed,
                history=rule_edits.history(p.board.engine))


@router.get("/files.zip")
def download_all(p: PortalDep, v: FileViewer) -> Any:
    """Every public file in one zip, streamed."""
    name = f"{safe_file_name(p.comp.name)}-public.zip"
    return StreamingResponse(stream_zip(p.public_root, p.public_files()),
                             media_type="application/zip",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/files/{path:path}")
def download(request: Request, path: str, p: PortalDep, v: FileViewer) -> Any:
    """A public file, or a public folder's listing."""
    clean = path.strip("/")
    folder = p.public_path(clean) if clean else None
    try:
        if folder is not None and folder.is_dir() and folder != p.public_root:
            rel = folder.relative_to(p.public_root).as_posix()
            entries = sorted(f for f in p.public_files() if f.startswith(rel + "/"))
            return page(request, "folder.html", folder=rel, files=entries)
    except OSError:
        pass  # not a folder we can read: answered as a missing file
    target = p.public_file(clean)
    if target is None:
        raise HTTPException(404, "no such public file")
    return FileResponse(target, filename=target.name)


@router.get("/submit", response_class=HTMLResponse)
def submit_form(request: Request, v: TeamOnly) -> Any:
    return page(request, "submit.html")


@router.post("/submit", response_class=HTMLResponse)
async def submit_page(request: Request, p: PortalDep, v: TeamOnly) -> Any:
    """The form's upload, streamed after the sign-in is checked (see uploads.py)."""
    assert v.team is not None
    try:
        # The team's limits and a slot before the body; the body's bytes then grow its space.
        async with (admitted_upload(request, p, v.team) as reservation,
                    received_upload(request, p.comp.max_submission_bytes,
                                    p.comp.rules.max_message_chars, upload_csrf(request),
                                    on_bytes=reservation.grow,
                                    idle_seconds=p.comp.config.portal.upload_idle_seconds)
                    as upload):
            outcome = await run_in_threadpool(p.board.submissions.submit, upload.path, v.team,
                                              upload.message, baseline=False,
                                              queue=True, create_team=False)
    except UploadRefused as e:
        refused = page(request, "submit.html", status=e.status_code, refusal=e.detail)
        refused.headers.update(e.headers or {})  # e.g. Retry-After
        return refused
    except RuleError as e:
        return page(request, "submit.html", status=refusal_status(e), refusal=str(e))
    except SubmissionError as e:
        return page(request, "submit.html", status=400, refusal=str(e))
    if outcome.status in WAITING:  # shown when it comes, if it comes soon
        p.queued()
        outcome = await p.outcome_within(outcome.id, v.team, SUBMIT_PAGE_WAIT_SECONDS)
    status = {"invalid": 422, "queued": 202, "scoring": 202}.get(outcome.status, 200)
    return page(request, "submit.html", status=status, outcome=p.outcome_json(outcome, v))


@router.get("/submissions", response_class=HTMLResponse)
def submissions_page(request: Request, p: PortalDep, v: TeamOnly) -> Any:
    assert v.team is not None
    rows = [p.outcome_json(o, v) for o in p.board.submissions.of_team(v.team)]
    # While a submission waits for its score the page reloads itself (no JavaScript).
    return page(request, "submissions.html", rows=rows,
                refresh=any(r["status"] in WAITING for r in rows))


@router.post("/submissions/{submission_id}/select")
def select_page(request: Request, submission_id: SubmissionId, p: PortalDep, v: TeamOnly,
                unselect: Annotated[bool, Form()] = False) -> Any:
    assert v.team is not None
    try:
        if unselect:
            p.board.selections.unselect(submission_id, v.team)
        else:
            p.board.selections.select(submission_id, v.team)
    except RuleError as e:
        return page(request, "submissions.html", status=400, refusal=str(e),
                    rows=[p.outcome_json(o, v) for o in p.board.submissions.of_team(v.team)])
    return RedirectResponse(url(request, "/submissions"), status_code=303)


@router.get("/leaderboard", response_class=HTMLResponse)
def leaderboard_page(request: Request, p: PortalDep) -> Any:
    return page(request, "leaderboard.html", private=False,
                entries=[e.as_json() for e in p.board_entries(private=False)])


@router.get("/leaderboard/private", response_class=HTMLResponse)
def private_leaderboard_page(request: Request, p: PortalDep, v: SignedIn) -> Any:
    if not p.may_see_private(viewer(request)):
        raise HTTPException(403, "the private leaderboard opens at the deadline")
    return page(request, "leaderboard.html", private=True,
                entries=[e.as_json() for e in p.board_entries(private=True)])


@router.get("/leaderboard/late", response_class=HTMLResponse)
def late_leaderboard_page(request: Request, p: PortalDep, v: SignedIn) -> Any:
    return page(request, "late.html", entries=p.late_json(v),
                show_private=p.may_see_private(v))
