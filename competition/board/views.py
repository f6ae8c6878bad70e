"""What participants and organizers see of submissions and boards: one set of models, used
by the CLI's JSON and the portal's responses alike."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, field_serializer


class _Timed(BaseModel):
    submitted_at: datetime

    @field_serializer("submitted_at")
    def _utc(self, value: datetime) -> str:
        if value.tzinfo is not None:  # read back from JSON
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat() + "Z"  # stored as naive UTC


class Outcome(_Timed):
    """One submission, as its team may see it."""

    id: int
    team: str
    status: str
    file_name: str
    public_score: float | None = None
    private_score: float | None = None  # shown only when the rules allow
    error: str | None = None
    message: str | None = None
    duplicate_of: int | None = None
    selected: bool = False
    # Made at or after the deadline (rule `late_submissions`): on the late board, never ranked.
    late: bool = False
    remaining_today: int | None = None
    # A code submission's run (issue 32), once it ran: wall_seconds, cpu_seconds,
    # peak_memory_mb, exit_code, cause and the ends of its stdout and stderr (the team's own).
    run: dict[str, Any] | None = None

    def as_json(self, show_private: bool) -> dict[str, Any]:
        exclude = set() if show_private else {"private_score"}
        if self.remaining_today is None:
            exclude.add("remaining_today")
        if self.run is None:
            exclude.add("run")
        return self.model_dump(mode="json", exclude=exclude)


class Entry(_Timed):
    """A row of a leaderboard."""

    rank: int
    team: str
    baseline: bool = False  # an organizers' baseline, not a participant
    score: float
    submission_id: int
    entries: int
    ci_low: float | None = None
    ci_high: float | None = None
    indistinguishable_from_leader: bool = False
    public_rank: int | None = None  # private board only
    rank_change: int | None = None  # private board only: public rank - private rank
    selections: list[int] = []
    # The task's item metrics (Task.item_metrics), each the mean over the board's items, by
    # label; and under `ranking: mean_of_ranks` the mean rank the board is ordered by.
    metrics: dict[str, float] = {}
    mean_rank: float | None = None
    # A code submission's efficiency (issue 32): its run's wall time and peak memory.
    wall_seconds: float | None = None
    peak_memory_mb: float | None = None

    def as_json(self) -> dict[str, Any]:
        private = self.public_rank is not None
        exclude = set() if private else {"public_rank", "rank_change", "selections"}
        if not self.metrics:
            exclude.add("metrics")
        if self.mean_rank is None:
            exclude.add("mean_rank")
        if self.wall_seconds is None:
            exclude |= {"wall_seconds", "peak_memory_mb"}
        return self.model_dump(mode="json", exclude=exclude)


class LateEntry(_Timed):
    """A row of the late board: a scored submission made at or after the deadline, with its
    scores (the private one where the viewer may see it), never ranked."""

    team: str
    baseline: bool = False
    submission_id: int
    public_score: float | None = None
    private_score: float | None = None

    def as_json(self, show_private: bool) -> dict[str, Any]:
        return self.model_dump(mode="json",
                               exclude=set() if show_private else {"private_score"})
