"""The course portal: server-rendered pages (no JavaScript) and a JSON API over one
competition's board. `create_app` only wires the routers (auth, participants' pages, API,
organizer), the guards (guard.RequestGuard on every request; the Origin check on every
state-changing one) and the error pages together."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from competition.interfaces.web.dependencies import same_origin
from competition.interfaces.web.guard import RequestGuard
from competition.interfaces.web.prefix import course_root, local_path, url
from competition.interfaces.web.rendering import error_page
from competition.interfaces.web.routers import api, auth, organizer, pages, rules, team
from competition.interfaces.web.sign_in_limits import SignInLimits
from competition.interfaces.web.state import Portal
from competition.jobs.job import DEFAULT_SCORER
from competition.jobs.runners import Runner


def create_app(directory: Path | str, store_url: str | None = None, *,
               trust_proxy: bool | None = None, session_hours: float | None = None,
               runner: Runner | None = None, scorer_spec: str = DEFAULT_SCORER,
               slug: str | None = None, sign_ins: SignInLimits | None = None) -> FastAPI:
    """`trust_proxy`: believe `X-Forwarded-Proto`/`X-Forwarded-Host` (only behind a proxy that
    sets them; default: $COMPETITION_TRUST_PROXY). `session_hours`: how long a sign-in lasts
    (default: $COMPETITION_SESSION_HOURS, else 12). `runner`: where scoring jobs run (default
    threads of this process; `competition serve` gives a Dask cluster). `slug` and
    `sign_ins`: given by a course (course.py), which mounts the app at /c/{slug}/ and owns
    the runner (see Portal)."""
    portal = Portal(directory, store_url, trust_proxy=trust_proxy,
                    session_ttl=timedelta(hours=session_hours) if session_hours else None,
                    runner=runner, scorer_spec=scorer_spec, slug=slug, sign_ins=sign_ins,
                    own_runner=slug is None)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # At start, queued jobs run at once; those a stopped serve process held, once their
        # leases run out.
        await run_in_threadpool(portal.start_jobs)
        yield
        await run_in_threadpool(portal.stop_jobs)

    app = FastAPI(title=f"{portal.comp.title} — competition portal",
                  description="Submit, see errors and scores, follow the leaderboard.",
                  version="1", dependencies=[Depends(same_origin)], lifespan=lifespan)
    app.state.portal = portal
    app.add_middleware(RequestGuard, portal=portal)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")),
              name="static")
    for router in (auth.router, pages.router, api.router, team.pages, team.api,
                   organizer.pages, organizer.api, rules.pages, rules.api):
        app.include_router(router)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if _wants_html(request):
            if exc.status_code == 401:  # in a course, its one sign-in
                return RedirectResponse(f"{course_root(request)}/login" if portal.in_course
                                        else url(request, "/login"), status_code=303)
            return await run_in_threadpool(error_page, request, exc.status_code, exc.detail)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                            headers=exc.headers)

    return app


def _wants_html(request: Request) -> bool:
    return not local_path(request).startswith("/api/") and \
        "text/html" in request.headers.get("accept", "text/html")
