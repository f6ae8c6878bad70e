"""Immutable, content-addressed copies of submitted files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from competition.errors import SubmissionError
from competition.formats.files import SubmissionFile, check_size

FILES_DIR = "store/files"
CHUNK = 1 << 20


def store_file(root: Path, submission: SubmissionFile, suffix: str) -> tuple[str, str]:
    """Keep the submitted file under its SHA-256, copied in chunks within the size limit;
    returns (sha256, path relative to the competition)."""
    if submission.path.is_dir():
        raise SubmissionError("this is a folder; submit one file (zip a folder first)",
                              file=submission.name)
    try:
        check_size(submission.size(), submission.limits.max_bytes)
    except SubmissionError as e:
        raise e.located(submission.name) from None
    files = Path(root) / FILES_DIR
    files.mkdir(parents=True, exist_ok=True)
    tmp = files / f".incoming.{os.getpid()}.{id(submission)}.tmp"
    digest = hashlib.sha256()
    size = 0
    try:
        with submission.path.open("rb") as source, tmp.open("wb") as out:
            while chunk := source.read(CHUNK):
                size += len(chunk)
                if size > submission.limits.max_bytes:  # it grew while being read
                    raise SubmissionError("the file grew over the size limit while read",
                                          file=submission.name)
                digest.update(chunk)
                out.write(chunk)
        sha = digest.hexdigest()
        rel = f"{FILES_DIR}/{sha[:2]}/{sha}{suffix}"
        path = Path(root) / rel
        if path.exists():
            tmp.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)
            os.replace(tmp, path)  # atomic: readers see the whole file or none
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return sha, rel

