"""Rescoring: every stored file scored again with the current scorer and solution, all
results written in one transaction, the history of scores kept.

Rescoring re-evaluates scores; it never lets a submission count past the daily limit that
applied when it was made. A submission that counted (scored) and scores again keeps its slot.
One that did not count (failed, or invalid) and now scores counts only if its own UTC day still
has a free slot under the limit in force when it was made (its `day_limit`), checked with its
team locked; otherwise it keeps its status and counted=False: its new score goes into its
history and its error says why it does not count, and it neither takes a slot nor ranks.
Submissions whose file was removed (uploads that ended invalid) are not rescored.
"""

from __future__ import annotations

from typing import Any

from competition.board.context import BoardContext
from competition.board.ledger import Ledger
from competition.board.scorer_process import ScoredFile
from competition.board.status import Status
from competition.board.store import db, scores, submissions, teams
from competition.board.store.db import Connection
from competition.board.submissions import Submissions, stored_result


class Rescoring:
    def __init__(self, ctx: BoardContext, ledger: Ledger, submissions_: Submissions):
        self.ctx, self.ledger, self.submissions = ctx, ledger, submissions_

    def rescore(self) -> list[dict[str, Any]]:
        """Score every stored submission again, then write all results in one transaction.
        Returns what changed (with `counted`, and a `note` for a submission that scores now
        but does not count)."""
        root = self.ctx.comp.root
        with db.read(self.ctx.engine) as conn:
            rows = [row for row in submissions.rescorable(conn)
                    if (root / row["file_path"]).is_file()]
        found = {row["id"]: self.submissions.rescore_stored(row) for row in rows}
        results = {key: result for key, result in found.items() if result is not None}
        rows = [row for row in rows if row["id"] in results]
        changes = []
        identity = next((r for r in results.values() if r.scorer_version), None)

        def newly_scored(row: dict[str, Any]) -> bool:
            return results[row["id"]].status == Status.SCORED and not row["counted"]

        with db.write(self.ctx.engine) as conn:
            # Teams that may take a slot are locked (in id order) before any slot is counted.
            for team_id in sorted({row["team_id"] for row in rows if newly_scored(row)}):
                self.ledger.lock_team(conn, team_id)
            names = teams.names(conn)
            not_counted: set[int] = set()
            events: dict[int, int] = {}
            # Those already counted first (one that no longer scores frees its slot), then
            # those that would take a slot, oldest first.
            for row in sorted(rows, key=lambda r: (newly_scored(r), r["id"])):
                new = results[row["id"]]
                note = None
                if newly_scored(row):
                    note = self._no_free_slot(conn, row, names[row["team_id"]])
                if note is None:
                    events[row["id"]] = self.submissions.record(conn, row["id"], new,
                                                                reason="rescore")
                else:
                    self._record_not_counted(conn, row, new, note)
                    not_counted.add(row["id"])
                status = row["status"] if note else new.status
                public = None if note else new.public
                private = None if note else new.private
                if note or (row["status"], _r(row["public_score"]), _r(row["private_score"])) \
                        != (status, _r(public), _r(private)):
                    changes.append({"id": row["id"], "old_status": row["status"],
                                    "new_status": status,
                                    "old_public": row["public_score"], "new_public": public,
                                    "old_private": row["private_score"],
                                    "new_private": private,
                                    "counted": status == Status.SCORED, "note": note})
            if identity is not None:
                submissions.stamp_duplicates(conn, identity.scorer_version,
                                             identity.solution_sha256)
        for row in rows:
            if row["id"] not in not_counted:
                self.submissions.track(dict(row), names[row["team_id"]], results[row["id"]],
                                       "rescore", events.get(row["id"]))
        return sorted(changes, key=lambda c: c["id"])

    def _no_free_slot(self, conn: Connection, row: dict[str, Any], team: str) -> str | None:
        """Why a submission that did not count cannot count now (its day's slots, under
        the limit in force when it was made, are taken), or None when one is free."""
        limit = row["day_limit"] or self.ctx.rules.daily_limit
        if self.ledger.used_today(conn, row["team_id"], row["submitted_at"]) < limit:
            return None
        day = row["submitted_at"].date().isoformat()
        return (f"rescoring found it valid, but it does not count: team {team!r} had used "
                f"its {limit} submissions of {day} (UTC), the day it was made")

    def _record_not_counted(self, conn: Connection, row: dict[str, Any], new: ScoredFile,
                            note: str) -> None:
        """The new score into the history only; the row keeps its status, uncounted, with
        the reason as its error."""
        scores.record_not_counted(conn, row["id"], stored_result(new), note, self.ctx.now(),
                                  reason="rescore (not counted: day full)")


def _r(value: float | None) -> float | None:
    return None if value is None else round(float(value), 12)
