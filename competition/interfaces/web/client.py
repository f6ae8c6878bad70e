"""`competition submit --server`: the JSON API from the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from competition.errors import CompetitionError, SubmissionError


def submit_remote(server: str, token: str, path: Path,
                  message: str | None = None) -> dict[str, Any]:
    if not path.is_file():
        raise SubmissionError("file not found", file=str(path))
    url = server.rstrip("/") + "/api/submissions"
    try:
        with path.open("rb") as f:
            response = httpx.post(url, headers={"Authorization": f"Bearer {token}"},
                                  files={"file": (path.name, f)},
                                  data={"message": message} if message else None,
                                  timeout=600)
    except httpx.HTTPError as e:
        raise CompetitionError(f"could not reach {server}: {e}") from None
    try:
        body = response.json()
    except ValueError:
        raise CompetitionError(f"{server} answered {response.status_code} without JSON") \
            from None
    if response.status_code in (201, 422) and isinstance(body, dict):
        return body
    raise CompetitionError(f"{server} refused the submission ({response.status_code}): "
                           f"{body.get('detail', body)}")
