"""What the portal serves, competition by competition: the summaries of
`GET /api/competitions` and of a course's home page. Only what a visitor may see anyway (the
title and the dates of the rules): nothing of a board, a team or a hidden label."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from competition.board.prepared import PreparedCompetition
from competition.board.rules import utcnow
from competition.interfaces.web.schemas import CompetitionSummary

Status = Literal["open", "upcoming", "closed"]


def as_utc(moment: dt.datetime | None) -> dt.datetime | None:
    """Naive UTC (as the rules are checked); an aware time is converted, a naive one is
    taken as UTC already."""
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


def iso_utc(moment: dt.datetime | None) -> str | None:
    found = as_utc(moment)
    return None if found is None else found.isoformat() + "Z"


def status_of(start: dt.datetime | None, deadline: dt.datetime | None,
              now: dt.datetime) -> Status:
    """"upcoming" before the start, "closed" from the deadline on, else "open"."""
    start, deadline = as_utc(start), as_utc(deadline)
    if start is not None and now < start:
        return "upcoming"
    if deadline is not None and now >= deadline:
        return "closed"
    return "open"


def competition_summary(comp: PreparedCompetition, slug: str, url: str,
                        now: dt.datetime | None = None) -> CompetitionSummary:
    """The competition as `GET /api/competitions` lists it; `url` is its base path, `now`
    (naive UTC) defaults to the clock."""
    rules = comp.rules
    return CompetitionSummary(
        id=comp.config.id, slug=slug, title=comp.title, kind=comp.config.task,
        status=status_of(rules.start, rules.deadline, now or utcnow()),
        start=iso_utc(rules.start), deadline=iso_utc(rules.deadline), url=url)
