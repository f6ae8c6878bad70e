"""The history of rule and description edits (the rule_changes table)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from competition.board.store.schema import rule_changes


def record(conn: Connection, changed_at: datetime, who: str,
           changes: list[tuple[str, str | None, str | None]]) -> None:
    """One row per (field, old value, new value), all at `changed_at` by `who`."""
    if changes:
        conn.execute(insert(rule_changes), [
            {"changed_at": changed_at, "who": who[:200], "field": field, "old_value": old,
             "new_value": new} for field, old, new in changes])


def latest(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """The `limit` most recent changes, newest first."""
    query = select(rule_changes).order_by(rule_changes.c.id.desc()).limit(limit)
    return [dict(r) for r in conn.execute(query).mappings()]
