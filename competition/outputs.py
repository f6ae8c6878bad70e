"""Where commands keep what they make: a new folder per run, never another run's."""

from __future__ import annotations

import datetime as dt
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
