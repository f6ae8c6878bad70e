"""Final selections: the submissions a team chooses for the private leaderboard."""

from __future__ import annotations

from sqlalchemy import and_, insert, select

from competition.board.context import BoardContext, RuleError
from competition.board.status import Status
from competition.board.store import db
from competition.board.store.schema import selections, submissions
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
            row = conn.execute(select(submissions.c.team_id, submissions.c.status)
                               .where(submissions.c.id == submission_id)).first()
            if team_id is None or row is None or row.team_id != team_id:
                raise RuleError(f"no submission {submission_id} of team {team!r}")
            if row.status != Status.SCORED:
                raise RuleError(f"submission {submission_id} is {row.status}; only scored "
                                "submissions can be selected")
            chosen: list[int] = list(conn.execute(select(selections.c.submission_id).where(
                selections.c.team_id == team_id)).scalars())
            if submission_id not in chosen:
                limit = self.ctx.rules.final_selections
                if len(chosen) >= limit:
                    raise RuleError(f"team {team!r} already has {len(chosen)} final "
                                    f"selections (the limit); unselect one first")
                conn.execute(insert(selections).values(team_id=team_id,
                                                       submission_id=submission_id,
                                                       selected_at=now))
                chosen.append(submission_id)
        return sorted(chosen)

    def unselect(self, submission_id: int, team: str) -> None:
        with db.write(self.ctx.engine) as conn:
            team_id = Teams.id_of(conn, team)
            conn.execute(selections.delete().where(and_(
                selections.c.team_id == team_id, selections.c.submission_id == submission_id)))
