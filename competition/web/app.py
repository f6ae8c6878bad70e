"""Pages (server-rendered, no JavaScript) and a JSON API for submitting and leaderboards.

Authentication: a team token or the organizer token, as `Authorization: Bearer TOKEN` (API)
or a cookie set by the login form (pages). Every page but the public leaderboard needs one;
a team sees only its own submissions and files; only files under `public/` are served.

(No `from __future__ import annotations` here: FastAPI must resolve the dependency
annotations, which name functions local to `create_app`, at definition time.)
"""


import csv
import io
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

from competition import leaderboard
from competition.errors import CompetitionError, SubmissionError
from competition.prepared import PreparedCompetition
from competition.submissions import Closed, LimitReached, RuleError, SubmissionStore

COOKIE = "competition_token"
# Ids fit a database integer: anything larger is a 422, never a database error.
SubmissionId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


class Viewer(BaseModel):
    role: str  # "team" or "organizer"
    team: str | None = None


class SubmissionOut(BaseModel):
    id: int
    team: str
    status: str
    submitted_at: str
    file_name: str
    public_score: float | None = None
    private_score: float | None = None
    error: str | None = None
    message: str | None = None
    duplicate_of: int | None = None
    selected: bool = False
    remaining_today: int | None = None


class BoardEntry(BaseModel):
    rank: int
    team: str
    score: float
    submission_id: int
    submitted_at: str
    entries: int
    ci_low: float | None = None
    ci_high: float | None = None
    indistinguishable_from_leader: bool = False
    public_rank: int | None = None
    rank_change: int | None = None
    selections: list[int] = []


class CompetitionOut(BaseModel):
    name: str
    title: str
    task: str
    metric: str
    rules: dict[str, Any]
    deadline_passed: bool
    public_files: list[str]


class ErrorOut(BaseModel):
    detail: str


ERRORS = {400: {"model": ErrorOut}, 401: {"model": ErrorOut}, 403: {"model": ErrorOut},
          404: {"model": ErrorOut}}


def create_app(directory: Path | str, store_url: str | None = None) -> FastAPI:
    comp = PreparedCompetition.open(directory)
    store = SubmissionStore(comp, url=store_url, start_method="forkserver")
    public_root = comp.public_dir.resolve()
    app = FastAPI(title=f"{comp.config.get('title', comp.name)} — competition portal",
                  description="Submit, see errors and scores, follow the leaderboard.",
                  version="1")
    app.state.store = store
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")),
              name="static")

    # --- who is asking ------------------------------------------------------------------

    def viewer(request: Request) -> Viewer | None:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else \
            request.cookies.get(COOKIE)
        who = store.who(token)
        return None if who is None else Viewer(role=who[0], team=who[1])

    def signed_in(request: Request) -> Viewer:
        v = viewer(request)
        if v is None:
            raise HTTPException(401, "a valid team or organizer token is needed")
        return v

    def team_only(v: Annotated[Viewer, Depends(signed_in)]) -> Viewer:
        if v.role != "team":
            raise HTTPException(403, "this action belongs to a team (use a team token)")
        return v

    def organizer_only(v: Annotated[Viewer, Depends(signed_in)]) -> Viewer:
        if v.role != "organizer":
            raise HTTPException(403, "organizers only")
        return v

    def may_see_private(v: Viewer | None) -> bool:
        return store.private_visible or (v is not None and v.role == "organizer")

    # --- shared actions -------------------------------------------------------------------

    def public_files() -> list[str]:
        return sorted(p.relative_to(public_root).as_posix() for p in public_root.rglob("*")
                      if p.is_file() and not p.is_symlink())

    async def read_upload(upload: UploadFile) -> bytes:
        limit = comp.max_submission_bytes
        chunks, size = [], 0
        while chunk := await upload.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"the file is over the size limit of "
                                         f"{limit / 1e6:.0f} MB")
            chunks.append(chunk)
        return b"".join(chunks)

    def submit_bytes(data: bytes, file_name: str, team: str, message: str | None):
        """Store-side submission of uploaded bytes (the store reads files from disk)."""
        safe_name = Path(file_name or "submission").name[:200] or "submission"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / safe_name
            path.write_bytes(data)
            return store.submit(path, team, message or None)

    def outcome_json(o, v: Viewer | None) -> dict:
        return o.as_json(may_see_private(v))

    def board(private: bool) -> list[dict]:
        entries = leaderboard.private_board(store) if private else \
            leaderboard.public_board(store)
        return [e.as_json() for e in entries]

    def grades_csv() -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["rank", "team", "private_score", "submission_id", "public_rank"])
        for e in leaderboard.private_board(store):
            writer.writerow([e.rank, e.team, e.score, e.submission_id, e.public_rank])
        return buffer.getvalue()

    # --- errors ---------------------------------------------------------------------------

    def wants_html(request: Request) -> bool:
        return not request.url.path.startswith("/api/") and \
            "text/html" in request.headers.get("accept", "text/html")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        if wants_html(request):
            if exc.status_code == 401:
                return RedirectResponse("/login", status_code=303)
            return TEMPLATES.TemplateResponse(request, "error.html", {
                "comp": comp, "viewer": viewer(request), "status": exc.status_code,
                "detail": exc.detail}, status_code=exc.status_code)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    # --- JSON API -------------------------------------------------------------------------

    @app.get("/api/competition", response_model=CompetitionOut, responses=ERRORS)
    def api_competition(v: Annotated[Viewer, Depends(signed_in)]):
        return CompetitionOut(name=comp.name, title=str(comp.config.get("title", comp.name)),
                              task=comp.task.name, metric=comp.task.metric,
                              rules={k: str(val) if val is not None else None
                                     for k, val in comp.rules.items()},
                              deadline_passed=store.private_visible,
                              public_files=public_files())

    @app.get("/api/leaderboard", response_model=list[BoardEntry])
    def api_leaderboard():
        return board(private=False)

    @app.get("/api/leaderboard/private", response_model=list[BoardEntry], responses=ERRORS)
    def api_private_leaderboard(v: Annotated[Viewer, Depends(signed_in)]):
        if not may_see_private(v):
            raise HTTPException(403, "the private leaderboard opens at the deadline")
        return board(private=True)

    # exclude_unset: before the deadline `private_score` is absent, not null.
    @app.post("/api/submissions", response_model=SubmissionOut, status_code=201,
              response_model_exclude_unset=True,
              responses={**ERRORS, 413: {"model": ErrorOut}, 422: {"model": SubmissionOut},
                         429: {"model": ErrorOut}})
    async def api_submit(v: Annotated[Viewer, Depends(team_only)],
                         file: Annotated[UploadFile, File()],
                         message: Annotated[str | None, Form()] = None):
        data = await read_upload(file)
        try:
            outcome = await run_sync(submit_bytes, data, file.filename or "", v.team, message)
        except RuleError as e:
            raise HTTPException(_refusal_status(e), str(e)) from None
        except SubmissionError as e:  # empty file, size: refused before storing
            raise HTTPException(400, str(e)) from None
        body = outcome_json(outcome, v)
        status = 422 if outcome.status == "invalid" else 201
        return JSONResponse(body, status_code=status)

    @app.get("/api/submissions", response_model=list[SubmissionOut], responses=ERRORS,
             response_model_exclude_unset=True)
    def api_submissions(v: Annotated[Viewer, Depends(team_only)]):
        return [outcome_json(o, v) for o in store.list(v.team)]

    @app.get("/api/submissions/{submission_id}/file", responses=ERRORS)
    def api_submission_file(submission_id: SubmissionId, v: Annotated[Viewer, Depends(signed_in)]):
        row = store.get(submission_id)
        if row is None or (v.role == "team" and row["team"] != v.team):
            raise HTTPException(404, "no such submission")
        return Response((comp.root / row["file_path"]).read_bytes(),
                        media_type="application/octet-stream",
                        headers={"Content-Disposition":
                                 f'attachment; filename="{_safe(row["file_name"])}"'})

    @app.post("/api/submissions/{submission_id}/select", response_model=list[int],
              responses=ERRORS)
    def api_select(submission_id: SubmissionId, v: Annotated[Viewer, Depends(team_only)]):
        try:
            return store.select(submission_id, v.team)
        except RuleError as e:
            raise HTTPException(400, str(e)) from None

    @app.delete("/api/submissions/{submission_id}/select", status_code=204, responses=ERRORS)
    def api_unselect(submission_id: SubmissionId, v: Annotated[Viewer, Depends(team_only)]):
        store.unselect(submission_id, v.team)
        return Response(status_code=204)

    @app.get("/api/organizer/submissions", responses=ERRORS)
    def api_all_submissions(v: Annotated[Viewer, Depends(organizer_only)]):
        return [{**r, "submitted_at": r["submitted_at"].isoformat() + "Z"}
                for r in store.all_submissions()]

    @app.post("/api/organizer/rescore", responses=ERRORS)
    def api_rescore(v: Annotated[Viewer, Depends(organizer_only)]):
        return store.rescore()

    @app.get("/api/organizer/grades.csv", response_class=PlainTextResponse, responses=ERRORS)
    def api_grades(v: Annotated[Viewer, Depends(organizer_only)]):
        return PlainTextResponse(grades_csv(), media_type="text/csv")

    @app.post("/api/organizer/teams/{team}/token", responses=ERRORS)
    def api_team_token(team: str, v: Annotated[Viewer, Depends(organizer_only)]):
        if not team.strip() or len(team) > 200:
            raise HTTPException(400, "a team name of 1 to 200 characters is needed")
        return {"team": team, "token": store.issue_team_token(team)}

    # --- pages ----------------------------------------------------------------------------

    def page(request: Request, name: str, status: int = 200, **context):
        return TEMPLATES.TemplateResponse(request, name, {
            "comp": comp, "viewer": viewer(request), "rules": store.rules,
            "deadline_passed": store.private_visible, **context}, status_code=status)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home(request: Request, v: Annotated[Viewer, Depends(signed_in)]):
        readme = comp.public_dir / "README.md"
        return page(request, "home.html", readme=readme.read_text() if readme.exists() else "",
                    files=public_files())

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request):
        return page(request, "login.html")

    @app.post("/login", include_in_schema=False)
    def login(request: Request, token: Annotated[str, Form()]):
        if store.who(token.strip()) is None:
            return page(request, "login.html", status=401, error="unknown token")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict")
        return response

    @app.post("/logout", include_in_schema=False)
    def logout():
        response = RedirectResponse("/leaderboard", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/files/{path:path}", include_in_schema=False)
    def download(path: str, v: Annotated[Viewer, Depends(signed_in)]):
        target = (public_root / path).resolve()
        if not target.is_relative_to(public_root) or not target.is_file():
            raise HTTPException(404, "no such public file")
        return FileResponse(target, filename=target.name)

    @app.get("/submit", response_class=HTMLResponse, include_in_schema=False)
    def submit_form(request: Request, v: Annotated[Viewer, Depends(team_only)]):
        return page(request, "submit.html")

    @app.post("/submit", response_class=HTMLResponse, include_in_schema=False)
    async def submit_page(request: Request, v: Annotated[Viewer, Depends(team_only)],
                          file: Annotated[UploadFile, File()],
                          message: Annotated[str | None, Form()] = None):
        data = await read_upload(file)
        try:
            outcome = await run_sync(submit_bytes, data, file.filename or "", v.team, message)
        except RuleError as e:
            return page(request, "submit.html", status=_refusal_status(e), refusal=str(e))
        except SubmissionError as e:
            return page(request, "submit.html", status=400, refusal=str(e))
        status = 422 if outcome.status == "invalid" else 200
        return page(request, "submit.html", status=status,
                    outcome=outcome_json(outcome, v))

    @app.get("/submissions", response_class=HTMLResponse, include_in_schema=False)
    def submissions_page(request: Request, v: Annotated[Viewer, Depends(team_only)]):
        return page(request, "submissions.html",
                    rows=[outcome_json(o, v) for o in store.list(v.team)])

    @app.post("/submissions/{submission_id}/select", include_in_schema=False)
    def select_page(request: Request, submission_id: SubmissionId,
                    v: Annotated[Viewer, Depends(team_only)],
                    unselect: Annotated[bool, Form()] = False):
        try:
            if unselect:
                store.unselect(submission_id, v.team)
            else:
                store.select(submission_id, v.team)
        except RuleError as e:
            return page(request, "submissions.html", status=400, refusal=str(e),
                        rows=[outcome_json(o, v) for o in store.list(v.team)])
        return RedirectResponse("/submissions", status_code=303)

    @app.get("/leaderboard", response_class=HTMLResponse, include_in_schema=False)
    def leaderboard_page(request: Request):
        return page(request, "leaderboard.html", private=False, entries=board(False))

    @app.get("/leaderboard/private", response_class=HTMLResponse, include_in_schema=False)
    def private_leaderboard_page(request: Request, v: Annotated[Viewer, Depends(signed_in)]):
        if not may_see_private(v):
            raise HTTPException(403, "the private leaderboard opens at the deadline")
        return page(request, "leaderboard.html", private=True, entries=board(True))

    @app.get("/organizer", response_class=HTMLResponse, include_in_schema=False)
    def organizer_page(request: Request, v: Annotated[Viewer, Depends(organizer_only)]):
        return page(request, "organizer.html", teams=store.teams_overview(),
                    rows=store.all_submissions())

    @app.post("/organizer/token", response_class=HTMLResponse, include_in_schema=False)
    def organizer_issue_token(request: Request, v: Annotated[Viewer, Depends(organizer_only)],
                              team: Annotated[str, Form()]):
        if not team.strip() or len(team) > 200:
            raise HTTPException(400, "a team name of 1 to 200 characters is needed")
        token = store.issue_team_token(team.strip())
        return page(request, "organizer.html", teams=store.teams_overview(),
                    rows=store.all_submissions(), issued=(team.strip(), token))

    @app.post("/organizer/rescore", response_class=HTMLResponse, include_in_schema=False)
    def organizer_rescore(request: Request, v: Annotated[Viewer, Depends(organizer_only)]):
        changes = store.rescore()
        return page(request, "organizer.html", teams=store.teams_overview(),
                    rows=store.all_submissions(), changes=changes)

    @app.get("/organizer/grades.csv", include_in_schema=False)
    def organizer_grades(v: Annotated[Viewer, Depends(organizer_only)]):
        return PlainTextResponse(grades_csv(), media_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="{_safe(comp.name)}-grades.csv"'})

    return app


async def run_sync(fn, *args):
    """Blocking work (validation, scoring) off the event loop."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)


def _refusal_status(error: CompetitionError) -> int:
    if isinstance(error, LimitReached):
        return 429
    if isinstance(error, Closed):
        return 403
    return 400


def _safe(name: str) -> str:
    return "".join(c for c in name if c.isalnum() or c in "._-")[:100] or "file"
