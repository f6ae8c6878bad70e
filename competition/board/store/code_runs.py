"""Code submissions' runs (issue 32): what an entry used and printed, one row per
submission (replaced when it runs again)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from competition.board.store.schema import code_runs

FIELDS = ("wall_seconds", "cpu_seconds", "peak_memory_mb", "exit_code", "cause",
          "stdout_tail", "stderr_tail", "output_path")


def record(conn: Connection, submission_id: int, run: dict[str, Any]) -> None:
    conn.execute(code_runs.delete().where(code_runs.c.submission_id == submission_id))
    conn.execute(insert(code_runs).values(submission_id=submission_id,
                                          **{k: run.get(k) for k in FIELDS}))


def of_submission(conn: Connection, submission_id: int) -> dict[str, Any] | None:
    found = conn.execute(select(code_runs).where(code_runs.c.submission_id == submission_id)
                         ).mappings().first()
    return dict(found) if found else None


def of_submissions(conn: Connection, ids: list[int]) -> dict[int, dict[str, Any]]:
    """The runs of these submissions (those that have one), by submission id."""
    if not ids:
        return {}
    rows = conn.execute(select(code_runs).where(code_runs.c.submission_id.in_(ids))).mappings()
    return {int(r["submission_id"]): dict(r) for r in rows}
