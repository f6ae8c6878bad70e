"""The late board (rule `late_submissions`, as Kaggle's late submissions): every scored
submission made at or after the deadline in force, oldest first, with its public and private
scores. Never ranked: the public and private boards, the grades and the final selections
leave these submissions out (board.leaderboard)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from competition.board.store import db, submissions
from competition.board.views import LateEntry

if TYPE_CHECKING:
    from competition.board.board import Board
    from competition.board.rules import Rules


def late_entries(rows: list[dict[str, Any]], rules: Rules) -> list[LateEntry]:
    """The late ones of the boards' rows, oldest first (pure); a score that is not a finite
    number is shown as none."""
    late = sorted((r for r in rows if rules.is_late(r["submitted_at"])),
                  key=lambda r: (r["submitted_at"], r["id"]))
    return [LateEntry(team=r["team"], baseline=bool(r["baseline"]), submission_id=r["id"],
                      submitted_at=r["submitted_at"], public_score=_finite(r["public_score"]),
                      private_score=_finite(r["private_score"])) for r in late]


def late_board(store: Board) -> list[LateEntry]:
    with db.read(store.engine) as conn:
        rows = submissions.scored_with_teams(conn)
    return late_entries(rows, store.rules)


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None
