"""Immutable, content-addressed copies of submitted files.

An upload is first staged: copied in chunks (never read whole) into a private temporary file
while it is hashed and its size checked. Only once the rules have accepted it and its row is
committed is the staged copy kept under its SHA-256 (`Staged.keep`); a refused upload's copy
is discarded, so rule refusals never leave a file in the store. Removing a kept copy (the file
of an upload that ended invalid) happens under `lock_file`, which the submitting transaction
takes too, so a file that a kept submission references is never removed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

from sqlalchemy import Connection, text

from competition.errors import SubmissionError
from competition.formats.files import SubmissionFile, check_size

FILES_DIR = "store/files"
CHUNK = 1 << 20
INCOMING = ".incoming."
# A staged copy not touched for this long belongs to a process that died mid-upload.
STALE_INCOMING_S = 24 * 3600


class Staged:
    """A staged upload: its SHA-256 and a temporary copy, to be kept or discarded."""

    def __init__(self, root: Path, sha256: str, tmp: Path):
        self.root, self.sha256, self.tmp = Path(root), sha256, tmp

    def rel(self, suffix: str) -> str:
        """Where it is kept, relative to the competition."""
        return f"{FILES_DIR}/{self.sha256[:2]}/{self.sha256}{suffix}"

    def keep(self, suffix: str) -> str:
        """Keep the copy under its address (once its submission row is committed: see the
        module's docstring); returns that address. Idempotent."""
        rel = self.rel(suffix)
        path = self.root / rel
        if not self.tmp.exists():
            if not path.exists():
                raise FileNotFoundError(f"the staged copy of {rel} is gone")
            return rel
        if path.exists():
            self.tmp.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self.tmp, 0o444)
            os.replace(self.tmp, path)  # atomic: readers see the whole file or none
        return rel

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


def stage_file(root: Path, submission: SubmissionFile) -> Staged:
    """Copy the submitted file, in chunks within the size limit, to a temporary file in the
    store while hashing it."""
    if submission.path.is_dir():
        raise SubmissionError("this is a folder; submit one file (zip a folder first)",
                              file=submission.name)
    try:
        check_size(submission.size(), submission.limits.max_bytes)
    except SubmissionError as e:
        raise e.located(submission.name) from None
    files = Path(root) / FILES_DIR
    files.mkdir(parents=True, exist_ok=True)
    _sweep_stale(files)
    fd, name = tempfile.mkstemp(prefix=INCOMING, suffix=".tmp", dir=files)
    tmp = Path(name)
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out, submission.path.open("rb") as source:
            while chunk := source.read(CHUNK):
                size += len(chunk)
                if size > submission.limits.max_bytes:  # it grew while being read
                    raise SubmissionError("the file grew over the size limit while read",
                                          file=submission.name)
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Staged(Path(root), digest.hexdigest(), tmp)


def store_file(root: Path, submission: SubmissionFile, suffix: str) -> tuple[str, str]:
    """Keep the submitted file under its SHA-256 at once, copied in chunks within the size
    limit; returns (sha256, path relative to the competition)."""
    staged = stage_file(root, submission)
    try:
        return staged.sha256, staged.keep(suffix)
    finally:
        staged.discard()


def lock_file(conn: Connection, rel: str) -> bool:
    """Serialise, until the end of the caller's transaction, everything that adds or removes a
    reference to the kept file `rel`. SQLite's write lock already serialises every writer; on
    PostgreSQL an advisory transaction lock on the path. False where neither holds (another
    SQL server): then no file may be removed."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        return True
    if dialect == "postgresql":
        key = int(hashlib.sha256(rel.encode()).hexdigest()[:15], 16)  # fits a signed bigint
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        return True
    return False


def remove_file(root: Path, rel: str) -> None:
    """Remove a kept file (call under `lock_file`, once no kept submission references it)."""
    (Path(root) / rel).unlink(missing_ok=True)


def _sweep_stale(files: Path) -> None:
    """Remove staged copies left by processes that died mid-upload."""
    cutoff = time.time() - STALE_INCOMING_S
    for path in files.glob(f"{INCOMING}*"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:
            pass  # another process removed or kept it meanwhile
