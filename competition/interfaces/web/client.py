"""`competition submit --server`: the JSON API from the terminal. The portal queues the upload
and answers at once; the client then follows the submission until it is scored."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from competition.errors import CompetitionError, SubmissionError

WAITING = ("queued", "scoring", "pending")


def submit_remote(server: str, token: str, path: Path, message: str | None = None,
                  timeout: float = 600, poll_seconds: float = 1.0) -> dict[str, Any]:
    """The submission's outcome (scored, invalid, failed...), or its last state after
    `timeout` seconds."""
    if not path.is_file():
        raise SubmissionError("file not found", file=str(path))
    base = server.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with path.open("rb") as f:
            response = httpx.post(f"{base}/api/submissions", headers=headers,
                                  files={"file": (path.name, f)},
                                  data={"message": message} if message else None,
                                  timeout=600)
        body = _body(server, response)
        if response.status_code not in (201, 202, 422):
            raise CompetitionError(f"{server} refused the submission ({response.status_code}): "
                                   f"{body.get('detail', body)}")
        deadline = time.monotonic() + timeout
        while body.get("status") in WAITING and time.monotonic() < deadline:
            time.sleep(poll_seconds)
            response = httpx.get(f"{base}/api/submissions/{body['id']}", headers=headers,
                                 timeout=60)
            if response.status_code != 200:
                raise CompetitionError(f"{server} answered {response.status_code} about "
                                       f"submission {body['id']}")
            body = _body(server, response)
    except httpx.HTTPError as e:
        raise CompetitionError(f"could not reach {server}: {e}") from None
    return body


def _body(server: str, response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise CompetitionError(f"{server} answered {response.status_code} without JSON") \
            from None
    if not isinstance(body, dict):
        raise CompetitionError(f"{server} answered {response.status_code} with {body!r}")
    return body
