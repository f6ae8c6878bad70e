"""Scoring results: a submission's outcome, its item scores, the history of its scores and
the payload its MLflow logging needs while that logging is owed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from competition.board.store.schema import (
    item_scores,
    score_history,
    submissions,
    tracking_payloads,
)


@dataclass(frozen=True)
class Result:
    """What a scoring found, as the store keeps it."""

    status: str
    public: float | None = None
    private: float | None = None
    error: str | None = None
    scorer_version: str | None = None
    solution_sha256: str | None = None


def record(conn: Connection, submission_id: int, result: Result, counted: bool,
           items: Sequence[tuple[str, str | None, list[float]]], payload: str | None,
           now: datetime, reason: str) -> int:
    """Write a result into the submission's row (its MLflow logging owed where `payload`,
    a JSON text, is given), its item scores (replacing earlier ones) and a history row;
    returns the history row's id."""
    conn.execute(update(submissions).where(submissions.c.id == submission_id).values(
        status=result.status, counted=counted, error=result.error,
        public_score=result.public, private_score=result.private,
        scorer_version=result.scorer_version, solution_sha256=result.solution_sha256,
        scored_at=now, tracking_pending=payload is not None))
    conn.execute(item_scores.delete().where(item_scores.c.submission_id == submission_id))
    if items:
        conn.execute(insert(item_scores), [
            {"submission_id": submission_id, "position": k, "item": item, "usage": usage,
             "item_values": json.dumps(values)}
            for k, (item, usage, values) in enumerate(items)])
    conn.execute(tracking_payloads.delete()
                 .where(tracking_payloads.c.submission_id == submission_id))
    if payload is not None:
        conn.execute(insert(tracking_payloads).values(submission_id=submission_id,
                                                      payload=payload))
    return add_history(conn, submission_id, result, now, reason)


def record_not_counted(conn: Connection, submission_id: int, result: Result, note: str,
                       now: datetime, reason: str) -> None:
    """A new score into the history only: the row keeps its status and scores, uncounted,
    with `note` as its error."""
    conn.execute(update(submissions).where(submissions.c.id == submission_id).values(
        counted=False, error=note, scorer_version=result.scorer_version,
        solution_sha256=result.solution_sha256, scored_at=now))
    add_history(conn, submission_id, result, now, reason)


def add_history(conn: Connection, submission_id: int, result: Result, now: datetime,
                reason: str) -> int:
    key = conn.execute(insert(score_history).values(
        submission_id=submission_id, status=result.status, public_score=result.public,
        private_score=result.private, scorer_version=result.scorer_version,
        solution_sha256=result.solution_sha256, recorded_at=now, reason=reason)
    ).inserted_primary_key
    assert key is not None
    return int(key[0])


def latest_event(conn: Connection, submission_id: int) -> tuple[int, str]:
    """(id, reason) of the submission's latest history row."""
    found = conn.execute(select(score_history.c.id, score_history.c.reason)
                         .where(score_history.c.submission_id == submission_id)
                         .order_by(score_history.c.id.desc()).limit(1)).one()
    return int(found.id), str(found.reason)


def tracking_payload(conn: Connection, submission_id: int) -> str | None:
    """The payload kept while the submission's MLflow logging is owed."""
    payload: str | None = conn.execute(select(tracking_payloads.c.payload).where(
        tracking_payloads.c.submission_id == submission_id)).scalar_one_or_none()
    return payload


def tracked(conn: Connection, submission_id: int) -> None:
    """The submission's MLflow logging is done: nothing owed, no payload kept."""
    conn.execute(update(submissions).where(submissions.c.id == submission_id)
                 .values(tracking_pending=False))
    conn.execute(tracking_payloads.delete()
                 .where(tracking_payloads.c.submission_id == submission_id))


def item_values(conn: Connection, ids: list[int], usage: str) -> dict[int, list[list[float]]]:
    """The item values of these submissions on the items of `usage`, in item order."""
    rows = conn.execute(select(item_scores.c.submission_id, item_scores.c.item_values)
                        .where(item_scores.c.submission_id.in_(ids),
                               item_scores.c.usage == usage)
                        .order_by(item_scores.c.submission_id, item_scores.c.position))
    values: dict[int, list[list[float]]] = {}
    for item in rows:
        values.setdefault(item.submission_id, []).append(json.loads(item.item_values))
    return values
