"""The commands tasks add (entry point group `competition.commands`), each task's under its
name: `competition landmarks patches ...`."""

from __future__ import annotations

import logging

import typer

log = logging.getLogger(__name__)


def add_task_commands(app: typer.Typer) -> None:
    """Adds every installed task's command group to `app`. Loading a group imports its
    module only (Typer and names), so `competition --help` stays light. A group that cannot
    be loaded, or is not a Typer app, is left out with a warning: the other commands work."""
    from competition.tasks import command_entry_points

    taken = {command.name or getattr(command.callback, "__name__", "").replace("_", "-")
             for command in app.registered_commands}
    taken |= {group.name for group in app.registered_groups if group.name}
    for name, point in sorted(command_entry_points().items()):
        if name in taken:
            log.warning("the commands of task %r are left out: %r is a command already",
                        name, name)
            continue
        try:
            group = point.load()
        except Exception as e:  # a broken plugin must not break every other command
            log.warning("the commands of task %r (%s) cannot be loaded: %s: %s", name,
                        point.value, type(e).__name__, e)
            continue
        if not isinstance(group, typer.Typer):
            log.warning("the commands of task %r (%s) are not a typer.Typer", name,
                        point.value)
            continue
        app.add_typer(group, name=name)
