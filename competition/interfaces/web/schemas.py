"""The JSON API's response models (submissions and board rows are the board's own models)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class CompetitionOut(BaseModel):
    name: str
    title: str
    task: str
    metric: str
    rules: dict[str, Any]
    deadline_passed: bool
    public_files: list[str]


class ErrorOut(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut}, 401: {"model": ErrorOut}, 403: {"model": ErrorOut},
    404: {"model": ErrorOut}}
