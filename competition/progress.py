"""Progress bars for long steps: on stderr, and only when a person is watching a terminal."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import track as rich_track

T = TypeVar("T")
_console = Console(stderr=True)


def track(items: Iterable[T], description: str) -> Iterator[T]:
    return rich_track(items, description=description, console=_console, transient=True,
                      disable=not _console.is_terminal)


def note(message: str) -> None:
    """A remark about the data that the user should see (stderr, never mixed with JSON)."""
    _console.print(f"note: {message}", highlight=False, markup=False, emoji=False)
