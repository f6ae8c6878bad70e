"""The rules in force (from competition.yaml and the task) and the clock they are checked
against."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from competition.configs import RulesConfig
    from competition.tasks.base import Direction


def utcnow() -> dt.datetime:
    """Naive UTC, as stored (every time in the store is UTC)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Rules:
    start: dt.datetime | None
    deadline: dt.datetime | None
    daily_limit: int
    final_selections: int
    higher_is_better: bool  # the task's direction: the one source
    uploads_per_hour: int = 20  # per team, every upload whatever its outcome, sliding hour
    max_message_chars: int = 1000

    @classmethod
    def from_config(cls, rules: RulesConfig, direction: Direction) -> Rules:
        return cls(rules.start, rules.deadline, rules.daily_limit, rules.final_selections,
                   direction.higher_is_better, rules.uploads_per_hour, rules.max_message_chars)

    def is_over(self, now: dt.datetime) -> bool:
        """After the deadline the private scores are revealed."""
        return self.deadline is not None and now >= self.deadline


def utc_day(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The UTC day containing `now`: the daily limit resets at 00:00 UTC."""
    start = dt.datetime(now.year, now.month, now.day)
    return start, start + dt.timedelta(days=1)
