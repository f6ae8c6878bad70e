"""Progress of long work: rich progress bars on stderr when a person watches a terminal, log
lines (`--verbose`) otherwise. One live display serves every caller, so bars nest: the harness
shows its stages and an entry its own loops (`track`) at the same time.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sized
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

T = TypeVar("T")
log = logging.getLogger("competition.progress")
_state: dict[str, Any] = {"progress": None, "depth": 0, "console": None}


def _console() -> Console:
    if _state["console"] is None:
        from rich.console import Console

        _state["console"] = Console(stderr=True)
    console: Console = _state["console"]
    return console


def watched() -> bool:
    """Whether a person watches: stderr is a terminal."""
    return _console().is_terminal


@contextlib.contextmanager
def _live() -> Iterator[Progress]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    if _state["progress"] is None:
        progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(), console=_console(),
                            transient=True)
        _state["progress"] = progress
        progress.start()
    _state["depth"] += 1
    try:
        yield _state["progress"]
    finally:
        _state["depth"] -= 1
        if _state["depth"] == 0:
            _state["progress"].stop()
            _state["progress"] = None


class Bar:
    """A bar advanced by hand (e.g. from a training callback)."""

    def __init__(self, progress: Progress | None, task: TaskID | None, description: str):
        self.progress, self.task, self.description = progress, task, description
        self.done = 0

    def advance(self, steps: int = 1, note: str | None = None) -> None:
        self.done += steps
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, advance=steps, description=self.description +
                                 (f" ({note})" if note else ""))
        else:
            log.info("%s: %d%s", self.description, self.done, f" ({note})" if note else "")


@contextlib.contextmanager
def bar(description: str, total: int | None = None) -> Iterator[Bar]:
    """A bar for work of `total` steps (a spinner when the total is unknown)."""
    log.info("%s...", description)
    if not watched():
        yield Bar(None, None, description)
        return
    with _live() as progress:
        task = progress.add_task(description, total=total)
        try:
            yield Bar(progress, task, description)
        finally:
            progress.remove_task(task)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar."""
    if total is None and isinstance(items, Sized):
        total = len(items)
    with bar(description, total) as shown:
        for item in items:
            yield item
            shown.advance()


def note(message: str) -> None:
    """A remark about the data that the user should see (stderr, never mixed with JSON)."""
    _console().print(f"note: {message}", highlight=False, markup=False, emoji=False)
