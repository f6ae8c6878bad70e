"""A course portal: several competitions served by one process (`competition serve DIR DIR
...`). Each competition's own app (app.create_app, unchanged) is mounted at /c/{slug}/, where
its pages, files, organizer pages and JSON API work as they do alone; the course adds its home
page (the competitions by status), `GET /api/competitions`, and one sign-in for all of them
(routers/course.py). The competitions share one job runner and one count of failed sign-ins;
everything else (store, rules, limits, sessions, cookies) stays each competition's own.

Served as a course folder with a course.yaml (`course_dir`), the course has an organizer who
may create competitions from the portal (routers/course_organizer.py, course_create.py): each
new one is prepared into the folder and mounted here live, as if it had been there at start.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.routing import Mount

from competition.board.course import Member, check_ids
from competition.interfaces.web.app import create_app
from competition.interfaces.web.course_create import Creator
from competition.interfaces.web.course_organizer import CourseOrganizer
from competition.interfaces.web.course_state import COURSE_PREFIX, Course, same_origin
from competition.interfaces.web.guard import RequestGuard
from competition.interfaces.web.prefix import base
from competition.interfaces.web.routers import course as course_routes
from competition.interfaces.web.routers import course_organizer as organizer_routes
from competition.interfaces.web.security import Site
from competition.interfaces.web.sign_in_limits import SignInLimits
from competition.interfaces.web.state import TRUST_PROXY_ENV, Portal, env_flag
from competition.jobs.job import DEFAULT_SCORER
from competition.jobs.runners import Runner, SharedRunner, ThreadRunner

log = logging.getLogger(__name__)


def create_course_app(members: list[Member], store_url: str | None = None, *,
                      trust_proxy: bool | None = None, session_hours: float | None = None,
                      runner: Runner | None = None,
                      scorer_spec: str = DEFAULT_SCORER,
                      course_dir: Path | None = None) -> FastAPI:
    """The course's app over `members` (board.course.course_members). `runner`: the one
    runner of every competition's jobs (default: two threads of this process). `course_dir`:
    the course folder (board.course.course_folder), whose course.yaml names its organizer:
    competitions may then be created from the portal, into it."""
    trust = env_flag(TRUST_PROXY_ENV) if trust_proxy is None else trust_proxy
    shared = SharedRunner(runner or ThreadRunner(2))
    sign_ins = SignInLimits()

    def competition_app(directory: Path, slug: str) -> FastAPI:
        return create_app(directory, store_url, trust_proxy=trust, session_hours=session_hours,
                          runner=shared.share(), scorer_spec=scorer_spec, slug=slug,
                          sign_ins=sign_ins)

    apps = {m.slug: competition_app(m.directory, m.slug) for m in members}
    portals: dict[str, Portal] = {slug: a.state.portal for slug, a in apps.items()}
    check_ids(members, [p.comp.config.id for p in portals.values()])
    course = Course(portals, Site(trust_proxy=trust), sign_ins, shared)
    sign_ins.strictest = course.sign_in_rules  # at every competition's sign-in too

    started = threading.Event()  # the lifespan ran: a competition mounted later starts now
    mounting = threading.Lock()

    def mount(directory: Path, slug: str) -> Portal:
        """Serve a competition prepared while the course runs, at /c/{slug}/."""
        with mounting:
            if slug in course.portals:
                raise ValueError(f"{slug!r} is served already")
            sub = competition_app(directory, slug)
            portal: Portal = sub.state.portal
            # Before the course's own catch-all route for unknown competitions.
            app.router.routes.insert(0, Mount(f"{COURSE_PREFIX}{slug}", app=sub,
                                              name=f"c-{slug}"))
            course.portals = {**course.portals, slug: portal}
        if started.is_set():
            portal.start_jobs()
        log.info("competition %s created and served at /c/%s/", directory, slug)
        return portal

    if course_dir is not None:
        ttl = timedelta(hours=session_hours or 12).total_seconds()
        course.organizer = CourseOrganizer(Path(course_dir), ttl)
        course.creator = Creator(Path(course_dir), course.organizer,
                                 lambda: set(course.portals), mount)
        course.mount = mount

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A mounted app's own lifespan never runs: the course starts and stops every
        # competition's jobs (those created meanwhile too), then closes the one runner they
        # share.
        for p in course.portals.values():
            await run_in_threadpool(p.start_jobs)
        started.set()
        yield
        started.clear()
        for p in course.portals.values():
            await run_in_threadpool(p.stop_jobs)
        await run_in_threadpool(shared.close)

    app = FastAPI(title="Course portal", version="1",
                  description="The course's competitions; each one's own API is at "
                              "/c/{slug}/api/ (its schema at /c/{slug}/openapi.json).",
                  dependencies=[Depends(same_origin)], lifespan=lifespan,
                  routes=[Mount(f"{COURSE_PREFIX}{slug}", app=a, name=f"c-{slug}")
                          for slug, a in apps.items()])
    app.state.course = course
    # Paths, bodies of the course's own routes (the mounted apps guard their own).
    app.add_middleware(RequestGuard, portal=None, passthrough=COURSE_PREFIX, large_bodies={
        path: lambda: organizer_routes.upload_cap(course)
        for path in ("/organizer/competitions", "/api/organizer/competitions")})
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")),
              name="static")
    app.include_router(organizer_routes.router)
    app.include_router(course_routes.router)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if not request.url.path.startswith("/api/") and \
                "text/html" in request.headers.get("accept", "text/html"):
            if exc.status_code == 401:  # a page for the signed-in: the course's sign-in
                return RedirectResponse(f"{base(request)}/login", status_code=303)
            return await run_in_threadpool(course_routes.error_page, request, exc.status_code,
                                           exc.detail)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                            headers=exc.headers)

    log.info("course of %d competitions: %s", len(portals), ", ".join(portals))
    return app
