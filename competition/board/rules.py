"""The rules in force (the competition's RulesConfig, with the task's direction) and the clock
they are checked against."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from pydantic import ConfigDict

from competition.configs import RulesConfig

if TYPE_CHECKING:
    from competition.tasks.base import Direction


def utcnow() -> dt.datetime:
    """Naive UTC, as stored (every time in the store is UTC)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Rules(RulesConfig):
    """The competition's rules as its competition.yaml gives them (every field and default is
    RulesConfig's, the one definition), frozen, and whether higher scores are better (the
    task's direction: the one source)."""

    model_config = ConfigDict(frozen=True)
    higher_is_better: bool

    @classmethod
    def from_config(cls, rules: RulesConfig, direction: Direction) -> Rules:
        return cls.model_construct(rules.model_fields_set | {"higher_is_better"},
                                   **dict(rules), higher_is_better=direction.higher_is_better)

    def is_over(self, now: dt.datetime) -> bool:
        """After the deadline the private scores are revealed."""
        return self.deadline is not None and now >= self.deadline

    def is_late(self, submitted_at: dt.datetime) -> bool:
        """Under the rule `late_submissions`, a submission made at or after the deadline in
        force is late: scored and shown on the late board, never ranked. Read from the time,
        not frozen when it was made: a deadline moved earlier makes what came after it late;
        one moved later brings what came before it back onto the boards. Without the rule
        nothing is late: every submission was taken before the deadline it then had, and a
        deadline moved earlier later on must not drop it from the boards."""
        return self.late_submissions and self.is_over(submitted_at)


def utc_day(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The UTC day containing `now`: the daily limit resets at 00:00 UTC."""
    start = dt.datetime(now.year, now.month, now.day)
    return start, start + dt.timedelta(days=1)
