"""The course organizer's pages and API: create a competition (course_create.py does the
work), and follow its job.

`GET /organizer` (the form), `POST /organizer/competitions` (303 to the job's page),
`GET /organizer/jobs/{id}` (refreshes itself until the job ends); as JSON,
`POST /api/organizer/competitions` (202, `Location` the job) and
`GET /api/organizer/jobs/{id}`. Both POSTs take the same multipart form (the zip in the field
`source_zip`, after the other fields). Only the course organizer (course_organizer.py) gets
past the first check, which runs before any byte of the body is read; with a session cookie
the form's CSRF token is checked before the zip's first byte.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from competition.interfaces.web.course_create import (
    FIELDS,
    ZIP_FIELD,
    Creator,
    Plan,
    check_zip,
    kinds,
)
from competition.interfaces.web.course_organizer import (
    COURSE_ORGANIZER_COOKIE,
    Organizing,
    course_organizer_of,
)
from competition.interfaces.web.course_state import Course, course_of
from competition.interfaces.web.guard import FORM_BODY_CAP
from competition.interfaces.web.prefix import base
from competition.interfaces.web.routers.auth import MAX_TOKEN_CHARS
from competition.interfaces.web.routers.course import render, sessions_of
from competition.interfaces.web.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    CSRF_REFUSED,
    SESSION_COOKIE,
    bearer_token,
    tokens_match,
)
from competition.interfaces.web.sign_in_limits import client_address
from competition.interfaces.web.uploads import received_form

router = APIRouter()
MB = 1_000_000
CREATION_OFF = ("creating competitions is off: it needs the course served as a course folder "
                "(`competition serve COURSE_DIR`) with a course.yaml, which "
                "`competition organizer-token --course COURSE_DIR` writes")


def _creator(course: Course) -> Creator:
    if course.creator is None:
        raise HTTPException(404, CREATION_OFF)
    return course.creator


def _organizing(request: Request) -> tuple[Course, Creator, Organizing]:
    """The course organizer, or 401 (no credentials) / 403 (someone else's)."""
    course = course_of(request)
    creator = _creator(course)
    assert course.organizer is not None
    course.organizer.config()  # a 503 naming course.yaml's problem, if it has one
    who = course_organizer_of(request, course.organizer, course.site)
    token = bearer_token(request)
    if who is None and token is not None:
        # A token nobody issued is a failed sign-in, counted as the course's sign-in counts
        # them (guessing here is guessing there): over the limits a 429, before any store is
        # asked; a token longer than any issued one is unknown without asking.
        address = client_address(request, trust_proxy=course.site.trust_proxy)
        refusal = course.sign_ins.blocked(address, token, course.sign_in_rules())
        if refusal is None and (len(token) > MAX_TOKEN_CHARS or not any(
                p.board.teams.who(token) for p in course.portals.values())):
            refusal = course.sign_ins.refused(address, token, course.sign_in_rules())
        if refusal is not None:
            raise HTTPException(429, refusal.message,
                                headers={"Retry-After": str(refusal.retry_after)})
    if who is None:
        if request.headers.get("authorization") or sessions_of(request, course):
            raise HTTPException(403, "the course organizer's token is needed (a team's, a "
                                     "student's or one competition's organizer token is not it)")
        raise HTTPException(401, "sign in with the course organizer's token (`competition "
                                 "organizer-token --course COURSE_DIR` issues it)")
    return course, creator, who


def upload_cap(course: Course) -> int:
    """The body cap of the two creating routes (the guard's): the zip and the form (a form's
    alone while creation is off or course.yaml unreadable: the route then refuses)."""
    try:
        if course.organizer is None:
            return FORM_BODY_CAP
        return int(course.organizer.config().max_source_upload_mb * MB) + FORM_BODY_CAP
    except HTTPException:
        return FORM_BODY_CAP


@router.get("/organizer", response_class=HTMLResponse, include_in_schema=False)
def organizer_page(request: Request) -> Any:
    course = course_of(request)
    if course.creator is None:
        return render(request, "course_organizer.html", status=404, off=CREATION_OFF)
    _organizing(request)
    assert course.organizer is not None
    config = course.organizer.config()
    jobs = sorted(course.creator.jobs.values(), key=lambda j: -j.created)
    return render(request, "course_organizer.html", kinds=kinds(), roots=config.sources,
                  max_mb=config.max_source_upload_mb, jobs=jobs)


async def _create(request: Request) -> tuple[Creator, str]:
    course, creator, who = await run_in_threadpool(_organizing, request)
    plans: list[Plan] = []

    def check_csrf(fields: dict[str, str]) -> None:
        """A session's form must be the portal's own."""
        if who.via == "session" and not tokens_match(
                who.csrf_token, request.headers.get(CSRF_HEADER) or fields.get(CSRF_FIELD)):
            raise HTTPException(403, CSRF_REFUSED)

    def before_zip(fields: dict[str, str]) -> None:
        # The fields sent before the zip are checked before a byte of it is received.
        check_csrf(fields)
        if "kind" not in fields:
            raise HTTPException(422, f"{ZIP_FIELD}: send the zip after the other fields "
                                     "(kind, slug, ...), which are checked before it")
        plans.append(creator.plan(fields, has_zip=True))

    assert course.organizer is not None
    config = await run_in_threadpool(course.organizer.config)
    folder = await run_in_threadpool(creator.zip_folder)
    async with received_form(request, int(config.max_source_upload_mb * MB), 0, before_zip,
                             extra={**FIELDS, CSRF_FIELD: 200}, file_field=ZIP_FIELD,
                             file_required=False, folder_in=folder) as (path, fields):
        check_csrf(fields)
        if path is not None and path.stat().st_size == 0:
            raise HTTPException(422, f"{ZIP_FIELD}: the zip is empty")
        if path is not None:
            await run_in_threadpool(check_zip, path, config)
        plan = plans[0] if plans else await run_in_threadpool(creator.plan, fields, False)
        job = await run_in_threadpool(creator.start, plan, path)
    return creator, job.id


@router.post("/organizer/competitions", include_in_schema=False)
async def create_from_form(request: Request) -> Any:
    _, job_id = await _create(request)
    return RedirectResponse(f"{base(request)}/organizer/jobs/{job_id}", status_code=303)


@router.get("/organizer/jobs/{job_id}", response_class=HTMLResponse, include_in_schema=False)
def job_page(request: Request, job_id: str) -> Any:
    course, creator, who = _organizing(request)
    job = creator.job(job_id)
    response = render(request, "course_job.html", job=job,
                      refresh=job.status in ("queued", "running"))
    if job.status == "done" and who.via == "session":
        _sign_in_to_the_new_one(request, response, course, job.slug)
    return response


def _sign_in_to_the_new_one(request: Request, response: Any, course: Course, slug: str) -> None:
    """The course organizer signed in before the competition existed, so the sign-in opened
    no session there: open one now (its organizer token is the course's), so that the page's
    link leads to the new competition signed in rather than to the sign-in form."""
    assert course.organizer is not None
    portal = course.portals.get(slug)
    held = course.organizer.session(course.site.cookie(request, COURSE_ORGANIZER_COOKIE))
    if portal is None or held is None or \
            portal.sessions.get(portal.site.cookie(request, SESSION_COOKIE)) is not None:
        return
    opened = portal.sessions.open_credential(held.credential, portal.session_ttl)
    if opened is not None:
        portal.site.set_cookie(response, request, SESSION_COOKIE, opened[0],
                               max_age=int(portal.session_ttl.total_seconds()))


_TEXT = {"type": "string"}
CREATE_SCHEMA: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["kind", "slug"],
        "properties": {
            "kind": {**_TEXT, "description": "a kind `competition tasks` lists"},
            "slug": {**_TEXT, "description": "the folder and address /c/SLUG/"},
            "title": _TEXT,
            "source": {**_TEXT, "description": "a folder under course.yaml's sources"},
            "options": {**_TEXT, "description": "key=value lines (--option)"},
            "start": _TEXT, "deadline": _TEXT,
            "rules": {**_TEXT, "description": "key=value lines of competition.yaml's rules"},
            ZIP_FIELD: {"type": "string", "format": "binary",
                        "description": "the source as a zip (instead of `source`; last)"}}}}}}}


@router.post("/api/organizer/competitions", status_code=202, openapi_extra=CREATE_SCHEMA)
async def create_from_api(request: Request) -> Any:
    """Create a competition (course organizer only): a multipart form with `kind`, `slug`,
    `title`, `source` (a folder under course.yaml's roots) or the zip `source_zip` (last),
    `options` and `rules` (`key=value` lines), `start`, `deadline`. 202: the job."""
    creator, job_id = await _create(request)
    url = f"{base(request)}/api/organizer/jobs/{job_id}"
    return JSONResponse({**creator.job(job_id).as_json(), "job_url": url}, status_code=202,
                        headers={"Location": url})


@router.get("/api/organizer/jobs/{job_id}")
def job_api(request: Request, job_id: str) -> Any:
    """A creation job: status (queued, running, done, failed), stage, fraction, error, and
    the competition's url once done."""
    _, creator, _ = _organizing(request)
    return creator.job(job_id).as_json()
