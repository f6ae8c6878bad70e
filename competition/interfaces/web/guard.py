"""The portal's outer guard (an ASGI middleware): odd paths and oversized bodies are refused
before any route runs, and competition.yaml is checked for changes.

- A path longer than MAX_PATH_BYTES is a 414, one with a control character (`%00`...) a 400.
- Every request body is counted as it arrives: a declared `Content-Length` over the route's
  cap, or more bytes than the cap (chunked bodies too), is a 413 as soon as the route asks for
  the body, so nothing past the cap is ever read. The cap is the competition's
  `max_submission_mb` plus a little multipart overhead on the two upload routes, and
  FORM_BODY_CAP on every other route (sign-in, selections, organizer forms).
The refusal is raised from `receive` as an HTTPException, so the route's own error handling
(JSON or an error page) answers it.

The upload routes then admit an upload (`admitted_upload`) before they read its body: the
limits the team is already over, then a slot and temporary space (see upload_slots.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from competition.board.context import Closed, LimitReached, RuleError, TooManyUploads
from competition.board.rule_edits import MAX_DESCRIPTION_BYTES
from competition.board.rules import utc_day
from competition.errors import CompetitionError
from competition.interfaces.web.prefix import local_path_of
from competition.interfaces.web.state import Portal
from competition.interfaces.web.upload_slots import Reservation, SlotLimits
from competition.interfaces.web.uploads import UPLOAD_PATHS, UploadRefused

MAX_PATH_BYTES = 2048
FORM_BODY_CAP = 64 * 1024
# Boundaries, part headers and the CSRF token (the message's own allowance comes on top).
MULTIPART_OVERHEAD = 64 * 1024
# The description's routes take up to MAX_DESCRIPTION_BYTES of text, which a form (%XX) or
# JSON (\uXXXX) may send as up to three times its UTF-8 bytes: past that, the route's own
# refusal names the field and the limit.
DESCRIPTION_PATHS = frozenset({"/organizer/description", "/api/organizer/description"})
DESCRIPTION_BODY_CAP = 3 * MAX_DESCRIPTION_BYTES + FORM_BODY_CAP


def upload_body_cap(portal: Portal) -> int:
    rules = portal.comp.rules
    return portal.comp.max_submission_bytes + MULTIPART_OVERHEAD + 4 * rules.max_message_chars


def declared_length(headers: Headers) -> int | None:
    """The declared Content-Length; None when absent (chunked); -1 when not a number."""
    value = headers.get("content-length")
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() and len(value) < 20 else -1


def refusal_status(error: CompetitionError) -> int:
    """The HTTP status of a rule's refusal: over a limit 429, outside the opening hours 403,
    anything else 400."""
    if isinstance(error, LimitReached):
        return 429
    if isinstance(error, Closed):
        return 403
    return 400


@contextlib.asynccontextmanager
async def admitted_upload(request: Request, portal: Portal,
                          team: str) -> AsyncIterator[Reservation]:
    """What an upload passes before a byte of its body is read, cheapest first (the route's
    dependencies have checked the token): the limits the team is already over (429; 403
    outside the opening hours), then a slot, and room in the temporary space for what the
    upload declares (429, 503, 507; see upload_slots). Yields the reservation, which the
    body's bytes grow as they arrive; the slot and the space are given back when the block
    ends, however it ends."""
    board = portal.board
    refusal = await run_in_threadpool(board.ledger.refusal_now, team)
    if refusal is not None:
        raise UploadRefused(refusal_status(refusal), str(refusal),
                            headers=_retry_after(refusal, board.ctx.now))
    limits = SlotLimits.of(portal.comp.config.portal, upload_body_cap(portal))
    # A length that is not a number never gets here (the guard answered 400).
    with portal.uploads.reserved(team, declared_length(request.headers), limits) as reservation:
        yield reservation


def _retry_after(refusal: RuleError, now: Callable[[], datetime]) -> dict[str, str] | None:
    """When the limit that refused lets the team upload again, as a Retry-After header."""
    if isinstance(refusal, TooManyUploads):
        return {"Retry-After": str(refusal.retry_after_s)}
    if isinstance(refusal, LimitReached):  # the daily limit: it resets at 00:00 UTC
        moment = now()
        return {"Retry-After": str(max(1, int((utc_day(moment)[1] - moment).total_seconds())))}
    return None


def too_large(cap: int, *, upload: bool, what: str | None = None) -> HTTPException:
    if what is not None:
        return HTTPException(413, f"{what} are over the size limit of {cap / 1e6:.1f} MB "
                                  "(the course's max_source_upload_mb, with the form's "
                                  "overhead)")
    if upload:
        return UploadRefused(413, f"the upload is over the size limit of {cap / 1e6:.1f} MB "
                                  "(the competition's max_submission_mb, with the form's "
                                  "overhead)")
    return HTTPException(413, f"the request body is over {cap // 1024} KiB")


class RequestGuard:
    """`portal` None: a course's own routes (paths under `passthrough`, the mounted
    competitions, are left to their own guards after the path checks; `large_bodies`: the
    course's routes that take a file, by path, with the function giving their cap now)."""

    def __init__(self, app: ASGIApp, portal: Portal | None,
                 passthrough: str | None = None,
                 large_bodies: Mapping[str, Callable[[], int]] | None = None) -> None:
        self.app, self.portal, self.passthrough = app, portal, passthrough
        self.large_bodies = dict(large_bodies or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "replace")
        if len(raw_path) > MAX_PATH_BYTES:
            await _refuse(scope, receive, send, 414,
                          f"the path is longer than {MAX_PATH_BYTES} characters")
            return
        path: str = scope["path"]
        if any(ord(c) < 32 or ord(c) == 127 for c in path):
            await _refuse(scope, receive, send, 400,
                          "the path contains a control character (such as %00)")
            return
        if self.portal is None:
            if self.passthrough and local_path_of(scope).startswith(self.passthrough):
                await self.app(scope, receive, send)
                return
            upload = description = False
            large = self.large_bodies.get(local_path_of(scope)) \
                if scope["method"] == "POST" else None
        else:
            large = None
            if self.portal.stale():
                await run_in_threadpool(self.portal.reload)
            own = local_path_of(scope)  # the route's own path, under any mount prefix
            upload = scope["method"] == "POST" and own in UPLOAD_PATHS
            description = own in DESCRIPTION_PATHS
        cap = upload_body_cap(self.portal) if upload and self.portal else \
            large() if large is not None else \
            DESCRIPTION_BODY_CAP if description else FORM_BODY_CAP
        headers = Headers(scope=scope)
        length = declared_length(headers)
        if length == -1:
            await _refuse(scope, receive, send, 400, "the Content-Length header is not a number")
            return
        if length is not None and "transfer-encoding" in headers:
            # The server would follow the chunks and the length would only pretend to bound
            # the body (RFC 9112 lets a server refuse such a request).
            await _refuse(scope, receive, send, 400, "send either Content-Length or "
                                                     "Transfer-Encoding, not both")
            return
        await _Capped(self.app, cap, length, upload=upload,
                      what=None if large is None else "the source zip and the form")(
            scope, receive, send)


class _Capped:
    """One request whose body may not pass `cap` bytes."""

    def __init__(self, app: ASGIApp, cap: int, declared: int | None, *, upload: bool,
                 what: str | None = None) -> None:
        self.app, self.cap, self.declared, self.upload = app, cap, declared, upload
        self.what = what
        self.received = 0
        self.responding = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def capped_receive() -> Message:
            over = self.declared is not None and self.declared > self.cap
            if not over:  # before reading a byte of a body declared too large
                message = await receive()
                if message["type"] != "http.request":
                    return message
                self.received += len(message.get("body", b""))
                over = self.received > self.cap
                if not over:
                    return message
            if self.responding:
                # A response is under way (e.g. a stream that listens for the client going
                # away): the body is simply not read further.
                return {"type": "http.disconnect"}
            raise too_large(self.cap, upload=self.upload, what=self.what)

        async def watched_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.responding = True
            await send(message)

        await self.app(scope, capped_receive, watched_send)


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int,
                  detail: str) -> None:
    response: Any = JSONResponse({"detail": detail}, status_code=status)
    await response(scope, receive, send)
