"""The JSON API's response models (submissions and board rows are the board's own models)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class CompetitionOut(BaseModel):
    name: str
    title: str
    task: str
    metric: str
    # Each rule as JSON has it: a number (daily_limit 5, public_fraction 0.333...), a string
    # (ranking; deadline as ISO 8601), or null where unset.
    rules: dict[str, int | float | bool | str | None]
    deadline_passed: bool
    public_files: list[str]
    # The rules' history, newest first: {changed_at, field, old, new} (who changed them is
    # the organizer's to see: GET /api/organizer/rules).
    rule_changes: list[dict[str, Any]] = []


class ErrorOut(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut}, 401: {"model": ErrorOut}, 403: {"model": ErrorOut},
    404: {"model": ErrorOut}}


class CompetitionSummary(BaseModel):
    """One competition of the portal, as `GET /api/competitions` lists it (catalog.py)."""

    id: str | None  # competition.yaml's id (None for one prepared before ids)
    slug: str  # the competition folder's name: its path in a course is /c/{slug}/
    title: str
    kind: str  # the task (nuclei, landmarks, ...)
    status: Literal["open", "upcoming", "closed"]
    start: str | None  # ISO 8601 in UTC ("...Z"), or null when unset
    deadline: str | None
    url: str  # the competition's base path: "/" served alone, "/c/{slug}/" in a course


class PublicFile(BaseModel):
    path: str  # relative to the public folder, with "/"
    size: int  # bytes
