"""The organizer's rule and description edits: pages (a form each, CSRF-checked like every
form) and the JSON API (`GET`, `PUT`/`PATCH /api/organizer/rules`, `GET`/`PUT
/api/organizer/description`). Thin: competition.board.rule_edits validates, writes and
records; the portal then reads the new competition.yaml (from this response on: it is
re-read here, and any other request sees the changed file by its stat)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from competition.board import rule_edits
from competition.errors import ConfigError
from competition.interfaces.web.dependencies import OrganizerOnly, PortalDep
from competition.interfaces.web.publish import description_html
from competition.interfaces.web.rendering import page
from competition.interfaces.web.schemas import ERRORS, ErrorOut
from competition.interfaces.web.security import Viewer
from competition.interfaces.web.state import Portal

pages = APIRouter(prefix="/organizer", include_in_schema=False)
api = APIRouter(prefix="/api/organizer")
EDIT_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS, 409: {"model": ErrorOut}, 413: {"model": ErrorOut}, 422: {"model": ErrorOut}}
IfMatch = Annotated[str | None, Header(description="The `signature` (ETag) of the version "
                                                   "read: a 409 if it changed since")]


def who(v: Viewer) -> str:
    """Who the history names: the organizer, and whether by the pages or the API (the
    organizer token is one, so there is no one person to name)."""
    return "organizer (page)" if v.via == "session" else "organizer (API)"


def _field_errors(e: ConfigError) -> dict[str, str]:
    """A refusal's messages by rule (the model's keys are `rules.NAME`)."""
    return {key.removeprefix("rules."): text for key, text in e.problems.items()} or \
        {"": str(e)}


def _encodable(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


def _text(value: Any) -> str:
    """A rule's JSON value as the form shows it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _in_force(p: Portal) -> tuple[dict[str, Any], str]:
    """The rules competition.yaml holds (JSON values) and its signature; a 409 when the file
    was broken by hand (the portal keeps the earlier rules then: state.Portal.reload)."""
    try:
        rules, sig = rule_edits.rules_in_force(p.directory)
    except ConfigError as e:
        raise HTTPException(409, f"{e} (the earlier rules stay in force: correct "
                                 "competition.yaml by hand first)") from None
    return rules.model_dump(mode="json"), sig


def _rules_page(request: Request, p: Portal, status: int = 200, **context: Any) -> Any:
    rules, sig = _in_force(p)
    values = {k: _text(v) for k, v in rules.items()}
    return page(request, "organizer_rules.html", status, fields=rule_edits.editable(),
                values={**values, **context.pop("given", {})}, signature=sig,
                fixed=rule_edits.FIXED, history=rule_edits.history(p.board.engine),
                **context)


@pages.get("/rules", response_class=HTMLResponse)
def rules_form(request: Request, p: PortalDep, v: OrganizerOnly) -> Any:
    return _rules_page(request, p)


@pages.post("/rules", response_class=HTMLResponse)
async def rules_submit(request: Request, p: PortalDep, v: OrganizerOnly) -> Any:
    form = await request.form()
    names = [f.name for f in rule_edits.editable()]
    given = {k: str(form[k]) for k in names if isinstance(form.get(k), str)}
    expected = form.get("signature")
    try:
        changes = await run_in_threadpool(
            rule_edits.edit_rules, p.directory, p.board.engine, rule_edits.from_text(given),
            who(v), expected=expected if isinstance(expected, str) else "")
    except ConfigError as e:
        return await run_in_threadpool(_rules_page, request, p, 422, errors=_field_errors(e),
                                       given=given, refusal=str(e))
    except rule_edits.StaleEdit as e:
        return await run_in_threadpool(_rules_page, request, p, 409, refusal=str(e))
    await run_in_threadpool(p.reload)  # this page already shows the new rules
    return await run_in_threadpool(_rules_page, request, p, changes=changes)


def _description_page(request: Request, p: Portal, status: int = 200, **context: Any) -> Any:
    text, sig = rule_edits.description(p.directory)
    return page(request, "organizer_description.html", status,
                markdown=context.pop("given", text), signature=sig,
                preview=description_html(text), limit=rule_edits.MAX_DESCRIPTION_BYTES,
                **context)


@pages.get("/description", response_class=HTMLResponse)
def description_form(request: Request, p: PortalDep, v: OrganizerOnly) -> Any:
    return _description_page(request, p)


@pages.post("/description", response_class=HTMLResponse)
async def description_submit(request: Request, p: PortalDep, v: OrganizerOnly) -> Any:
    form = await request.form()
    text, expected = form.get("description"), form.get("signature")
    if not isinstance(text, str):
        return await run_in_threadpool(_description_page, request, p, 422,
                                       refusal="description: the form has no description")
    try:
        change = await run_in_threadpool(
            rule_edits.edit_description, p.directory, p.board.engine, text, who(v),
            expected=expected if isinstance(expected, str) else "")
    except rule_edits.DescriptionTooLarge as e:
        return await run_in_threadpool(_description_page, request, p, 413, refusal=str(e))
    except rule_edits.InvalidDescription as e:
        return await run_in_threadpool(_description_page, request, p, 422, refusal=str(e))
    except rule_edits.StaleEdit as e:
        return await run_in_threadpool(_description_page, request, p, 409, refusal=str(e),
                                       given=text)
    return await run_in_threadpool(_description_page, request, p, saved=change is not None)


# --- the API ------------------------------------------------------------------------------

def _rules_json(p: Portal, **extra: Any) -> JSONResponse:
    rules, sig = _in_force(p)
    return JSONResponse({
        "rules": rules, "signature": sig,
        "editable": [f.name for f in rule_edits.editable()], "fixed": rule_edits.FIXED,
        "changes": rule_edits.history_json(rule_edits.history(p.board.engine), who=True),
        **extra}, headers={"ETag": f'"{sig}"'})


@api.get("/rules", responses=ERRORS)
def api_rules(p: PortalDep, v: OrganizerOnly) -> Any:
    """The rules in force, the signature of competition.yaml (also as the ETag), which rules
    may be edited, and the history of changes."""
    return _rules_json(p)


def _api_edit(p: Portal, v: Viewer, body: dict[str, Any], if_match: str | None, *,
              replace: bool) -> Any:
    try:
        changes = rule_edits.edit_rules(p.directory, p.board.engine, body, who(v),
                                        expected=if_match, replace=replace)
    except ConfigError as e:
        # The message may quote a key or value sent (a lone surrogate too): made encodable.
        return JSONResponse({"detail": _encodable(str(e)), "fields": {
            _encodable(k): _encodable(t) for k, t in _field_errors(e).items()}},
            status_code=422)
    except rule_edits.StaleEdit as e:
        raise HTTPException(409, str(e)) from None
    p.reload()
    return _rules_json(p, changed=[{"field": c.field, "old": c.old, "new": c.new}
                                   for c in changes])


@api.patch("/rules", responses=EDIT_ERRORS)
def api_patch_rules(p: PortalDep, v: OrganizerOnly, body: Annotated[dict[str, Any], Body()],
                    if_match: IfMatch = None) -> Any:
    """Change the rules given (e.g. `{"daily_limit": 3, "deadline": "2026-12-31T23:59Z"}`),
    keeping the others: 422 naming the rule for a value refused (nothing written), 409 if
    `If-Match` names a version that is no longer in force."""
    return _api_edit(p, v, body, if_match, replace=False)


@api.put("/rules", responses=EDIT_ERRORS)
def api_put_rules(p: PortalDep, v: OrganizerOnly, body: Annotated[dict[str, Any], Body()],
                  if_match: IfMatch = None) -> Any:
    """Set every editable rule: those not given return to their defaults (GET, change, PUT
    with `If-Match`); errors as PATCH."""
    return _api_edit(p, v, body, if_match, replace=True)


@api.get("/description", responses=ERRORS)
def api_description(p: PortalDep, v: OrganizerOnly) -> Any:
    """The description's Markdown and its signature (also as the ETag)."""
    text, sig = rule_edits.description(p.directory)
    return JSONResponse({"description": text, "signature": sig},
                        headers={"ETag": f'"{sig}"'})


@api.put("/description", responses=EDIT_ERRORS)
def api_put_description(p: PortalDep, v: OrganizerOnly,
                        description: Annotated[str, Body(embed=True)],
                        if_match: IfMatch = None) -> Any:
    """Replace the description (`{"description": "# Markdown..."}`, at most 200 KB): 413
    over the limit, 409 if `If-Match` names a version no longer in force."""
    try:
        change = rule_edits.edit_description(p.directory, p.board.engine, description, who(v),
                                             expected=if_match)
    except rule_edits.DescriptionTooLarge as e:
        raise HTTPException(413, str(e)) from None
    except rule_edits.InvalidDescription as e:
        raise HTTPException(422, str(e)) from None
    except rule_edits.StaleEdit as e:
        raise HTTPException(409, str(e)) from None
    _, sig = rule_edits.description(p.directory)
    return JSONResponse({"changed": change is not None, "signature": sig},
                        headers={"ETag": f'"{sig}"'})
