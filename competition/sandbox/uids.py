"""Dedicated unprivileged uids for sandboxed jobs, one per running job.

RLIMIT_NPROC counts a uid's processes (and never limits uid 0), so each job runs as a uid of
its own: its process limit is its own, and whatever still runs as that uid after the job is
the job's and is killed. Slots are held by flock on a file per uid, so concurrent jobs of this
process and of other harness processes on the host never share one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FIRST_UID = 61000
SLOTS = 1000
LOCK_DIR = Path(tempfile.gettempdir()) / "competition-sandbox-uids"


@contextlib.contextmanager
def lease() -> Iterator[int]:
    """A uid no other job holds, for the duration of the block."""
    LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    for slot in range(SLOTS):
        uid = FIRST_UID + slot
        fd = os.open(LOCK_DIR / str(uid), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield uid
        finally:
            os.close(fd)  # releases the lock
        return
    raise RuntimeError(f"all {SLOTS} sandbox uids are in use")


def drop_kwargs(uid: int, dropped_inside: bool) -> dict[str, Any]:
    """Popen's arguments that start the command as `uid` (when root, and the sandbox does not
    drop to it itself)."""
    if os.geteuid() != 0 or dropped_inside:
        return {}
    return {"user": uid, "group": uid, "extra_groups": []}
