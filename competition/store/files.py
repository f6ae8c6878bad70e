"""Immutable, content-addressed copies of submitted files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

FILES_DIR = "store/files"


def store_file(root: Path, data: bytes, suffix: str) -> tuple[str, str]:
    """Keep `data` under its SHA-256; returns (sha256, path relative to the competition)."""
    digest = hashlib.sha256(data).hexdigest()
    rel = f"{FILES_DIR}/{digest[:2]}/{digest}{suffix}"
    path = Path(root) / rel
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.chmod(tmp, 0o444)
        os.replace(tmp, path)  # atomic: readers see the whole file or none
    return digest, rel


def read_file(root: Path, rel: str) -> bytes:
    return (Path(root) / rel).read_bytes()
