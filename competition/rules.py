"""The rules of a competition (from competition.yaml) and the clock they are checked against."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from competition.errors import CompetitionDirError

UTC = dt.UTC


def utcnow() -> dt.datetime:
    """Naive UTC, as stored (every time in the store is UTC)."""
    return dt.datetime.now(UTC).replace(tzinfo=None)


def _parse_time(value: Any, key: str) -> dt.datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime(value.year, value.month, value.day)
    else:
        try:
            parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise CompetitionDirError(f"competition.yaml: rules.{key} {value!r} is not an ISO "
                                      "date-time (e.g. 2026-12-01T23:59:00Z)") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


@dataclass(frozen=True)
class Rules:
    start: dt.datetime | None
    deadline: dt.datetime | None
    daily_limit: int
    final_selections: int
    higher_is_better: bool

    @classmethod
    def from_config(cls, rules: dict[str, Any]) -> Rules:
        direction = str(rules.get("score_direction", "maximize"))
        if direction not in ("maximize", "minimize"):
            raise CompetitionDirError("competition.yaml: rules.score_direction must be "
                                      "maximize or minimize")
        try:
            daily = int(rules.get("daily_limit", 5))
            final = int(rules.get("final_selections", 2))
        except (TypeError, ValueError):
            raise CompetitionDirError("competition.yaml: rules.daily_limit and "
                                      "rules.final_selections must be integers") from None
        if daily < 1 or final < 1:
            raise CompetitionDirError("competition.yaml: daily_limit and final_selections "
                                      "must be at least 1")
        return cls(_parse_time(rules.get("start"), "start"),
                   _parse_time(rules.get("deadline"), "deadline"), daily, final,
                   direction == "maximize")

    def is_over(self, now: dt.datetime) -> bool:
        """After the deadline the private scores are revealed."""
        return self.deadline is not None and now >= self.deadline


def utc_day(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The UTC day containing `now`: the daily limit resets at 00:00 UTC."""
    start = dt.datetime(now.year, now.month, now.day)
    return start, start + dt.timedelta(days=1)
