"""`GET /api/competitions`: the portal's catalog, for `competition competitions --server`.
A single-competition portal lists itself alone; the course portal (catalog.py) lists every
competition it mounts, at the same address and with the same schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter

from competition.board.rules import utcnow
from competition.interfaces.web.dependencies import PortalDep
from competition.interfaces.web.schemas import CompetitionSummary

router = APIRouter(prefix="/api")


# Open like the public leaderboard, which already names the competition: a participant finds
# the competition before signing in. Nothing here is about submissions or scores.
@router.get("/competitions", response_model=list[CompetitionSummary])
def api_competitions(p: PortalDep) -> Any:
    comp, now = p.comp, utcnow()
    start, deadline = comp.rules.start, comp.rules.deadline  # naive UTC, as stored
    status: Literal["open", "upcoming", "closed"] = \
        "upcoming" if start is not None and now < start else \
        "closed" if deadline is not None and now >= deadline else "open"
    return [CompetitionSummary(
        id=comp.config.id or comp.root.name, slug=comp.root.name, title=comp.title,
        kind=comp.task.name, status=status, start=_utc(start), deadline=_utc(deadline),
        url="/")]


def _utc(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat() + "Z"
