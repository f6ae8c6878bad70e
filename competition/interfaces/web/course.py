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
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.routing import Mount

from competition.board.course import Member, check_ids
from competition.configs import PortalConfig
from competition.interfaces.web.app import create_app
from competition.interfaces.web.guard import RequestGuard
from competition.interfaces.web.security import (
    UNSAFE_METHODS,
    Site,
    normal_origin,
    request_origin,
)
from competition.interfaces.web.sign_in_limits import SignInLimits
from competition.interfaces.web.state import TRUST_PROXY_ENV, Portal, env_flag
from competition.jobs.job import DEFAULT_SCORER
from competition.jobs.runners import Runner, SharedRunner, ThreadRunner

log = logging.getLogger(__name__)
COURSE_PREFIX = "/c/"


@dataclass
class Course:
    """The course's state: its competitions' portals by slug, in the order given."""

    portals: dict[str, Portal]
    site: Site
    sign_ins: SignInLimits
    runner: SharedRunner

    def sign_in_rules(self) -> PortalConfig:
        """The strictest of the competitions' sign-in limits (a token tried at the course's
        sign-in is tried at every competition)."""
        configs = [p.comp.config.portal for p in self.portals.values()]
        return configs[0].model_copy(update={
            "sign_in_window_seconds": max(c.sign_in_window_seconds for c in configs),
            "sign_in_failures_per_address": min(c.sign_in_failures_per_address
                                                for c in configs),
            "sign_in_attempts_per_token_prefix": min(c.sign_in_attempts_per_token_prefix
                                                     for c in configs)})


def create_course_app(members: list[Member], store_url: str | None = None, *,
                      trust_proxy: bool | None = None, session_hours: float | None = None,
                      runner: Runner | None = None,
                      scorer_spec: str = DEFAULT_SCORER) -> FastAPI:
    """The course's app over `members` (board.course.course_members). `runner`: the one
    runner of every competition's jobs (default: two threads of this process)."""
    from competition.interfaces.web.routers import course as course_routes

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


def course_of(request: Request) -> Course:
    found: Course = request.app.state.course
    return found


def same_origin(request: Request) -> None:
    """As a competition's (dependencies.same_origin): a state-changing request from a page
    of another origin is refused."""
    if request.method not in UNSAFE_METHODS:
        return
    origin = request_origin(request)
    if origin is None:
        return
    own = course_of(request).site.own_origin(request)
    if origin.strip().lower() == "null" or normal_origin(origin) != own:
        raise HTTPException(403, f"a request from another site ({origin[:100]}) may not change "
                                 f"anything here; use this portal's own pages ({own})")
