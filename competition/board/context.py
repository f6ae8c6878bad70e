"""What every part of the board shares: the competition, its store and rules, and a clock."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from competition.board.prepared import PreparedCompetition
from competition.board.rules import Rules
from competition.board.store.db import Engine
from competition.errors import CompetitionError


class RuleError(CompetitionError):
    """A refusal under the rules (unknown team, selection limit...)."""


class LimitReached(RuleError):
    """The team's submissions of the UTC day are used up."""


class TooManyUploads(LimitReached):
    """The team's uploads of the last hour are used up: every upload counts, whatever became
    of it. A LimitReached too, so that whatever maps limits to a refusal (HTTP 429) maps this.
    `retry_at` (naive UTC) is when the next upload is possible; `retry_after_s` the whole
    seconds until then (at least 1), for a Retry-After header."""

    def __init__(self, message: str, retry_at: datetime, retry_after_s: int):
        super().__init__(message)
        self.retry_at, self.retry_after_s = retry_at, retry_after_s


class Closed(RuleError):
    """Before the start or after the deadline."""


@dataclass
class BoardContext:
    comp: PreparedCompetition
    engine: Engine
    rules: Rules
    now: Callable[[], datetime]
    host: str = field(default_factory=socket.gethostname)

    @property
    def private_visible(self) -> bool:
        return self.rules.is_over(self.now())
