"""Where commands keep what they make: a new folder per run, never another run's."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from competition.errors import CompetitionError


def fresh_folder(parent: Path, name: str) -> Path:
    """A new folder `parent/NAME-TIME` (TIME in UTC seconds; `-2`, `-3`... added when runs
    start within one second): a run never writes into another's."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        folder = parent / (f"{name}-{stamp}" + (f"-{n}" if n > 1 else ""))
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise CompetitionError(f"{parent}: no free folder name for {name}-{stamp}")


def write_atomic(path: Path, data: bytes) -> None:
    """`path` holds `data` whole or keeps what it held: written to a temporary file beside
    it, then renamed over it (a process stopped mid-write leaves no half file)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def exclusive(folder: Path, what: str) -> Iterator[None]:
    """An exclusive lock on `folder` (its `.lock` file) for the block, or a refusal naming
    `what` when another process holds it."""
    fd = os.open(Path(folder) / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CompetitionError(f"{folder}: {what} is running in another process") from None
        yield
    finally:
        os.close(fd)
