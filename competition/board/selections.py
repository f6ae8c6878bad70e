"""Final selections: the submissions a team chooses for the private leaderboard."""

from __future__ import annotations

from competition.board.context import BoardContext, RuleError
from competition.board.status import Status
from competition.board.store import db
from competition.board.store import selections as store
from competition.board.store.submissions import team_and_status
from competition.board.teams import Teams


class Selections:
    def __init__(self, ctx: BoardContext):
        self.ctx = ctx

    def select(self, submission_id: int, team: str) -> list[int]:
        """Choose a final selection; returns the team's selections."""
        now = self.ctx.now()
        if self.ctx.rules.is_over(now):
            raise RuleError("the deadline has passed: final selections are frozen")
        with db.write(self.ctx.engine) as conn:
            team_id = Teams.id_of(conn, team)
            row = team_and_status(conn, submission_id)
            if team_id is None or row is None or row[0] != team_id:
                raise RuleError(f"no submission {submission_id} of team {team!r}")
            status = row[1]
            if status != Status.SCORED:
                raise RuleError(f"submission {submission_id} is {status}; only scored "
                                "submissions can be selected")
            chosen = store.of_team(conn, team_id)
            if submission_id not in chosen:
                limit = self.ctx.rules.final_selections
                if len(chosen) >= limit:
                    raise RuleError(f"team {team!r} already has {len(chosen)} final "
                                    f"selections (the limit); unselect one first")
                store.add(conn, team_id, submission_id, now)
                chosen.append(submission_id)
        return sorted(chosen)

    def unselect(self, submission_id: int, team: str) -> None:
        with db.write(self.ctx.engine) as conn:
            team_id = Teams.id_of(conn, team)
            store.remove(conn, team_id, submission_id)
