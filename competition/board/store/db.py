"""Engines and transactions: an SQLite file in WAL mode by default, any SQL server by URL.

Nothing here changes a store's schema: `make_engine` connects, and the schema is Alembic's
(competition.board.store.migrations), applied by `competition migrate`, by `prepare` and at
`serve` start. The rest of the package runs the statements; everything outside it calls it
with a `Connection` from `write` or `read`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event

__all__ = ["DEFAULT_FILE", "Conflict", "Connection", "Engine", "make_engine", "read",
           "store_url", "write"]

DEFAULT_FILE = "store/submissions.sqlite"


class Conflict(Exception):
    """A row refused by a unique constraint (another process inserted the same key first);
    raised out of the transaction, which is rolled back."""


def store_url(root: Path, configured: str | None = None) -> str:
    """`COMPETITION_STORE_URL`, else the competition's `store.url`, else the SQLite file."""
    url = os.environ.get("COMPETITION_STORE_URL") or configured
    if url:
        return url
    path = (Path(root) / DEFAULT_FILE).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def make_engine(url: str) -> Engine:
    """An engine on the store (no statement runs until it is used; none changes the schema)."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    # isolation_level=None hands transactions to us: each one starts with BEGIN IMMEDIATE,
    # taking the write lock up front so that check-then-insert (the daily limit) is atomic
    # across processes.
    engine = create_engine(url, connect_args={"timeout": 60, "isolation_level": None})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # Readers do not need the write lock (WAL lets them run beside a writer).
        deferred = conn.get_execution_options().get("read_only", False)
        conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

    return engine


@contextlib.contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """One atomic read-modify-write transaction (serialised per team on SQL servers by a row
    lock on the team, by the database write lock on SQLite)."""
    with engine.begin() as conn:
        yield conn


@contextlib.contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    """A consistent read-only snapshot."""
    with engine.connect().execution_options(read_only=True) as conn, conn.begin():
        yield conn
