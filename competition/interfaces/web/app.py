"""The course portal: server-rendered pages (no JavaScript) and a JSON API over one
competition's board. `create_app` only wires the routers (auth, participants' pages, API,
organizer) and the error pages together."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from competition.interfaces.web.portal import TEMPLATES, Portal, viewer
from competition.interfaces.web.routers import api, auth, organizer, pages


def create_app(directory: Path | str, store_url: str | None = None) -> FastAPI:
    portal = Portal(directory, store_url)
    app = FastAPI(title=f"{portal.comp.title} — competition portal",
                  description="Submit, see errors and scores, follow the leaderboard.",
                  version="1")
    app.state.portal = portal
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")),
              name="static")
    for router in (auth.router, pages.router, api.router, organizer.pages, organizer.api):
        app.include_router(router)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if _wants_html(request):
            if exc.status_code == 401:
                return RedirectResponse("/login", status_code=303)
            return TEMPLATES.TemplateResponse(request, "error.html", {
                "comp": portal.comp, "viewer": viewer(request), "status": exc.status_code,
                "detail": exc.detail}, status_code=exc.status_code)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    return app


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and \
        "text/html" in request.headers.get("accept", "text/html")
