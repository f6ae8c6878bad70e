"""The portal's JSON API from the terminal (`competition ... --server URL`).

`Remote` turns every answer that is not the one asked for into one clear line (a
CompetitionError): unreachable, a refused token (naming where it came from, never its value),
403, 404, 429 with its Retry-After, a redirect, an answer that is not JSON. Redirects are not
followed: the token must go to the address given and nowhere else."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from competition.errors import CompetitionError, SubmissionError
from competition.interfaces.credentials import Token

WAITING = ("queued", "scoring", "pending")
MAX_DETAIL_CHARS = 300
# What is read of an answer before it is parsed (the portal may be anything): a board or a
# listing of any class fits many times over; a refusal is a line.
MAX_REPLY_BYTES = 64 * 2**20
MAX_REFUSAL_BYTES = 64 * 2**10


class RemoteError(CompetitionError):
    """A portal's refusal (`status`: its HTTP status; None when it was not reached)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class Remote:
    """One portal: its base URL (`http://HOST:8000`, or `http://HOST:8000/c/SLUG` on a
    course portal) and the token sent to it, if any."""

    def __init__(self, server: str, token: Token | None, timeout: float = 60):
        self.server, self.token, self.timeout = server.rstrip("/"), token, timeout

    def url(self, path: str) -> str:
        return f"{self.server}{path}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token.value}"} if self.token else {}

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def rows(self, path: str) -> list[dict[str, Any]]:
        """A GET answered with a JSON list of objects (a board, a listing)."""
        body = self.get(path)
        if not isinstance(body, list) or not all(isinstance(r, dict) for r in body):
            raise RemoteError(f"{self.server} answered {path} with something else than a list")
        return body

    def call(self, method: str, path: str, ok: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        """The JSON body of an answer whose status is in `ok` (None for 204)."""
        timeout = kwargs.pop("timeout", self.timeout)
        try:
            with httpx.stream(method, self.url(path), headers=self.headers, timeout=timeout,
                              **kwargs) as streamed:
                refused = streamed.status_code not in ok
                response = self._read(streamed, MAX_REFUSAL_BYTES if refused
                                      else MAX_REPLY_BYTES)
        except httpx.HTTPError as e:
            raise self.unreachable(e) from None
        if refused:
            raise self.refusal(response)
        return None if response.status_code == 204 else self.json(response)

    def _read(self, response: httpx.Response, most: int) -> httpx.Response:
        """The answer with its body read, at most `most` bytes of it (decoded)."""
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > most:
                raise RemoteError(f"{self.server} answered {response.status_code} with more "
                                  f"than {most:,} bytes: is it a competition portal?")
        # Its body decoded already: the headers that describe the encoded one are left out.
        headers = {k: v for k, v in response.headers.items()
                   if k.lower() not in ("content-encoding", "content-length",
                                        "transfer-encoding")}
        return httpx.Response(response.status_code, headers=headers, content=bytes(body),
                              request=response.request)

    @contextlib.contextmanager
    def stream(self, path: str) -> Iterator[httpx.Response]:
        """A GET whose body is read as it comes (a download)."""
        try:
            with httpx.stream("GET", self.url(path), headers=self.headers,
                              timeout=self.timeout) as response:
                if response.status_code != 200:
                    raise self.refusal(self._read(response, MAX_REFUSAL_BYTES))
                yield response
        except httpx.HTTPError as e:
            raise self.unreachable(e) from None

    def unreachable(self, e: httpx.HTTPError) -> RemoteError:
        # httpx's messages name the address and the cause, never the headers.
        return RemoteError(f"could not reach {self.server}: {e or type(e).__name__}")

    def json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise CompetitionError(
                f"{self.server} answered {response.status_code} without JSON: is it a "
                "competition portal's address (http://HOST:8000, or http://HOST:8000/c/SLUG "
                "on a course portal)?") from None

    def refusal(self, response: httpx.Response) -> RemoteError:
        """One line for an answer that is not the one asked for."""
        return RemoteError(self._refusal_text(response), response.status_code)

    def _refusal_text(self, response: httpx.Response) -> str:
        code, where = response.status_code, self.server
        detail = _detail(response)
        if code == 401:
            if self.token is None:
                return (f"{where} needs a token: give --token, set $COMPETITION_TOKEN, or run "
                        f"`competition login --server {where}`")
            return (f"{where} refused the token from {self.token.source} (401: "
                    f"{detail or 'not a valid token'}); check it, or ask the organizer for a "
                    "new one")
        if code == 429:
            wait = response.headers.get("Retry-After", "")
            later = f"; try again in {wait} s" if wait.isdigit() else "; try again later"
            return f"{where} refused (429: {detail or 'too many requests'}){later}"
        if 300 <= code < 400:
            target = response.headers.get("Location", "?")[:200]
            return (f"{where} redirected ({code}) to {target}: give the portal's own address "
                    "as --server")
        if code == 404 and detail in ("", "Not Found"):  # no route (FastAPI's own answer)
            return (f"{where} has no {response.request.url.path} (404): is it a competition "
                    "portal's address (http://HOST:8000, or http://HOST:8000/c/SLUG on a "
                    "course portal)?")
        if code >= 500:
            return (f"{where} failed ({code}){': ' + detail if detail else ''}; try again "
                    "later, or tell the organizer")
        return f"{where} refused ({code}: {detail or 'no reason given'})"


def _detail(response: httpx.Response) -> str:
    """The portal's `detail`, printable and short (the answer may come from anything)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):  # FastAPI's validation errors
        detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d)
                           for d in detail)
    if not isinstance(detail, str):
        return ""
    text = "".join(c if c.isprintable() else " " for c in detail[:MAX_DETAIL_CHARS + 1])
    return text if len(text) <= MAX_DETAIL_CHARS else text[:MAX_DETAIL_CHARS] + "…"


def submit_remote(remote: Remote, path: Path, message: str | None = None,
                  timeout: float = 600, poll_seconds: float = 1.0) -> dict[str, Any]:
    """The submission's outcome (scored, invalid, failed...), or its last state after
    `timeout` seconds. The portal queues the upload and answers at once; this then follows
    the submission until it is scored."""
    if not path.is_file():
        raise SubmissionError("file not found", file=str(path))
    if remote.token is None:  # said before the upload, not after it
        raise RemoteError(f"{remote.server} needs a token to submit: give --token, set "
                          f"$COMPETITION_TOKEN, or run `competition login --server "
                          f"{remote.server}`")
    with path.open("rb") as f:
        body = remote.call("POST", "/api/submissions", ok=(201, 202, 422),
                           files={"file": (path.name, f)},
                           data={"message": message} if message else None, timeout=600)
    if not isinstance(body, dict):
        raise CompetitionError(f"{remote.server} answered the submission with {body!r:.100}")
    deadline = time.monotonic() + timeout
    while body.get("status") in WAITING and time.monotonic() < deadline:
        time.sleep(poll_seconds)
        body = remote.get(f"/api/submissions/{int(body['id'])}")
    return dict(body)
