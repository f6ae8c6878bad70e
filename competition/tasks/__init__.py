"""The installed tasks, found by entry point (group `competition.tasks`).

A course adds a task in a package of its own: a `Task` subclass and, in that package's
pyproject.toml, `[project.entry-points."competition.tasks"] mytask = "mypkg:MyTask"`.
Nothing in the harness changes. Tasks are loaded on first use (importing one loads numpy and
its readers), so listing names stays cheap.

A task may add commands to the command line: a `typer.Typer` under the group
`competition.commands`, by the task's name (`mytask = "mypkg.commands:app"` gives
`competition mytask ...`). The CLI loads that module at every start, so it imports only Typer
at module level and its commands import the task's code when they run.
"""

from __future__ import annotations

import functools
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

from competition.errors import CompetitionError

if TYPE_CHECKING:
    from competition.tasks.base import AnyTask, Source

GROUP = "competition.tasks"
COMMANDS_GROUP = "competition.commands"


@functools.cache
def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def task_names() -> list[str]:
    return sorted(_entry_points())


def command_entry_points() -> dict[str, EntryPoint]:
    """The command groups tasks add to the CLI, by task name (not loaded)."""
    return {ep.name: ep for ep in entry_points(group=COMMANDS_GROUP)}


@functools.cache
def get_task(name: str) -> AnyTask:
    """The task registered as `name`, or a clear error naming the installed ones."""
    from competition.tasks.base import Task

    point = _entry_points().get(name)
    if point is None:
        raise CompetitionError(f"unknown task {name!r}; installed tasks: "
                               f"{', '.join(task_names()) or 'none'}")
    try:
        cls = point.load()
    except Exception as e:  # a broken plugin must not look like a bug of ours
        raise CompetitionError(f"task {name!r} ({point.value}) cannot be loaded: "
                               f"{type(e).__name__}: {e}") from None
    task = cls() if isinstance(cls, type) else cls
    if not isinstance(task, Task) or task.name != name:
        raise CompetitionError(f"entry point {name!r} ({point.value}) is not a Task named "
                               f"{name!r}")
    return task


def find_source(kind: str) -> tuple[AnyTask, Source]:
    """The task that prepares competitions of `kind`, and how."""
    kinds = all_sources()
    if kind not in kinds:
        raise CompetitionError(f"unknown kind {kind!r}; choose one of "
                               f"{', '.join(sorted(kinds))}")
    return kinds[kind]


def all_sources() -> dict[str, tuple[AnyTask, Source]]:
    found: dict[str, tuple[AnyTask, Source]] = {}
    for name in task_names():
        task = get_task(name)
        for kind, source in task.sources().items():
            if kind in found:
                raise CompetitionError(f"kind {kind!r} is offered by two tasks: "
                                       f"{found[kind][0].name} and {name}")
            found[kind] = (task, source)
    return found
