"""One writer at a time per SQLite tracking store, and retries when SQLite is busy anyway.

MLflow's SQLite store is not safe for many writing processes: 40 parallel submissions lost
most of their runs, to "database is locked" inside MLflow's store and, on a new store, to
its schema migrations racing each other (each failure only a warning, the run gone). So
every write to a SQLite store (and the store's first opening, which migrates it) holds an
exclusive lock on a file beside the database (`mlflow.db.lock`), across processes and
threads; readers that are not writers (the UI, an ensemble reading its members) can still
make a write wait, which the retries with backoff ride out. Servers and other databases
serialise their own writers: no lock there.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
_held = threading.local()  # the lock files this thread holds (the lock is reentrant)
LOCKED = ("database is locked", "database table is locked", "database schema is locked")
RETRIES = 8  # waits of 0.05 s doubling: about 13 s in all


def sqlite_file(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, else None."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    path = uri[len(prefix):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path if path.startswith("/") else
                                                       Path.cwd() / path)


@contextlib.contextmanager
def exclusive(uri: str, seconds: float = 120) -> Iterator[None]:
    """Hold the store's write lock (a no-op for stores that are not SQLite files). Raises
    TimeoutError when another process held it for over `seconds`."""
    path = sqlite_file(uri)
    held: set[Path] = getattr(_held, "paths", set())
    _held.paths = held
    if path is None or path in held:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    with open(lock, "a+b") as handle:
        deadline = time.monotonic() + seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{lock}: another process has been writing to the "
                                       f"tracking store for over {seconds:g} s") from None
                time.sleep(0.01 + random.random() * 0.02)
        held.add(path)
        try:
            yield
        finally:
            held.discard(path)
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_locked_error(error: BaseException) -> bool:
    text = str(error).lower()
    return any(fragment in text for fragment in LOCKED)


def retrying(call: Callable[[], T], what: str = "MLflow call") -> T:
    """`call()`, again after a growing wait while SQLite says it is locked. A failed write
    was rolled back, so repeating it cannot log twice."""
    for attempt in range(RETRIES + 1):
        try:
            return call()
        except Exception as e:
            if attempt == RETRIES or not is_locked_error(e):
                raise
            wait = 0.05 * 2 ** attempt * (0.5 + random.random())
            log.debug("%s: the tracking store is locked; again in %.2f s", what, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


class RetryingClient:
    """An MlflowClient whose every method is `retrying`."""

    def __init__(self, client: Any):
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            return retrying(lambda: attribute(*args, **kwargs), name)

        return call
