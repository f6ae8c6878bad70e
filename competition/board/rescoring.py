"""Rescoring: every stored file scored again with the current scorer and solution, all
results written in one transaction, the history of scores kept."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from competition.board.context import BoardContext
from competition.board.ledger import Ledger
from competition.board.status import Status
from competition.board.store import db
from competition.board.store.schema import submissions, teams
from competition.board.submissions import Submissions


class Rescoring:
    def __init__(self, ctx: BoardContext, ledger: Ledger, submissions_: Submissions):
        self.ctx, self.ledger, self.submissions = ctx, ledger, submissions_

    def rescore(self) -> list[dict[str, Any]]:
        """Score every stored submission again, then write all results in one transaction.
        Returns what changed."""
        self.ledger.reconcile()
        with db.read(self.ctx.engine) as conn:
            rows = conn.execute(select(submissions).where(
                submissions.c.status.in_((Status.SCORED, Status.INVALID, Status.FAILED)))
                .order_by(submissions.c.id)).mappings().all()
        root = self.ctx.comp.root
        results = {row["id"]: self.submissions.score_stored(root / row["file_path"],
                                                            row["file_name"])
                   for row in rows}
        changes = []
        identity = next((r for r in results.values() if r.scorer_version), None)
        with db.write(self.ctx.engine) as conn:
            for row in rows:
                new = results[row["id"]]
                self.submissions.record(conn, row["id"], new, reason="rescore")
                if (row["status"], _r(row["public_score"]), _r(row["private_score"])) != \
                        (new.status, _r(new.public), _r(new.private)):
                    changes.append({"id": row["id"], "old_status": row["status"],
                                    "new_status": new.status,
                                    "old_public": row["public_score"], "new_public": new.public,
                                    "old_private": row["private_score"],
                                    "new_private": new.private})
            if identity is not None:
                conn.execute(update(submissions)
                             .where(submissions.c.status == Status.DUPLICATE)
                             .values(scorer_version=identity.scorer_version,
                                     solution_sha256=identity.solution_sha256))
            names = {row.id: row.name for row in conn.execute(select(teams.c.id, teams.c.name))}
        for row in rows:
            self.submissions.track(dict(row), names[row["team_id"]], results[row["id"]],
                                   "rescore")
        return changes


def _r(value: float | None) -> float | None:
    return None if value is None else round(float(value), 12)
