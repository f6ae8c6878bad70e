"""A course portal: several competitions served by one process (`competition serve DIR DIR
...`). Each competition's own app (app.create_app, unchanged) is mounted at /c/{slug}/, where
its pages, files, organizer pages and JSON API work as they do alone; the course adds its home
page (the competitions by status), `GET /api/competitions`, and one sign-in for all of them
(routers/course.py). The competitions share one job runner and one count of failed sign-ins;
everything else (store, rules, limits, sessions, cookies) stays each competition's own.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.routing import Mount

from competition.board.course import Member, check_ids
from competition.interfaces.web.app import create_app
from competition.interfaces.web.course_state import COURSE_PREFIX, Course, same_origin
from competition.interfaces.web.guard import RequestGuard
from competition.interfaces.web.routers import course as course_routes
from competition.interfaces.web.security import Site
from competition.interfaces.web.sign_in_limits import SignInLimits
from competition.interfaces.web.state import TRUST_PROXY_ENV, Portal, env_flag
from competition.jobs.job import DEFAULT_SCORER
from competition.jobs.runners import Runner, SharedRunner, ThreadRunner

log = logging.getLogger(__name__)


def create_course_app(members: list[Member], store_url: str | None = None, *,
                      trust_proxy: bool | None = None, session_hours: float | None = None,
                      runner: Runner | None = None,
                      scorer_spec: str = DEFAULT_SCORER) -> FastAPI:
    """The course's app over `members` (board.course.course_members). `runner`: the one
    runner of every competition's jobs (default: two threads of this process)."""
    trust = env_flag(TRUST_PROXY_ENV) if trust_proxy is None else trust_proxy
    shared = SharedRunner(runner or ThreadRunner(2))
    sign_ins = SignInLimits()
    apps = {m.slug: create_app(m.directory, store_url, trust_proxy=trust,
                               session_hours=session_hours, runner=shared.share(),
                               scorer_spec=scorer_spec, slug=m.slug, sign_ins=sign_ins)
            for m in members}
    portals: dict[str, Portal] = {slug: a.state.portal for slug, a in apps.items()}
    check_ids(members, [p.comp.config.id for p in portals.values()])
    course = Course(portals, Site(trust_proxy=trust), sign_ins, shared)
    sign_ins.strictest = course.sign_in_rules  # at every competition's sign-in too

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A mounted app's own lifespan never runs: the course starts and stops every
        # competition's jobs, then closes the one runner they share.
        for p in portals.values():
            await run_in_threadpool(p.start_jobs)
        yield
        for p in portals.values():
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
    app.add_middleware(RequestGuard, portal=None, passthrough=COURSE_PREFIX)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")),
              name="static")
    app.include_router(course_routes.router)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if not request.url.path.startswith("/api/") and \
                "text/html" in request.headers.get("accept", "text/html"):
            return await run_in_threadpool(course_routes.error_page, request, exc.status_code,
                                           exc.detail)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                            headers=exc.headers)

    log.info("course of %d competitions: %s", len(portals), ", ".join(portals))
    return app
