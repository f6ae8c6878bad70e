"""Help pages as a person reads them.

Typer's own rendering shows a type for every flag (`--force <bool>`), writes a required
argument as `{directory}` in the usage line, and keeps a docstring's line breaks in the list of
commands, so a sentence wrapped at 100 columns in the source breaks mid-line on the screen.
`readable(app)` gives every command and group of `app` (task plugins' included) classes that
render flags without a type, arguments as DIRECTORY / [DIRECTORY], and docstrings as
paragraphs: one line each, however they are wrapped in the source.

Imports Typer only: it runs at every start of the CLI.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import typer
from typer._click import Context, Parameter
from typer.core import TyperCommand, TyperGroup, TyperOption
from typer.models import DefaultPlaceholder

# A usage piece Typer writes for an argument: {name} (required) or [name] (optional), "..."
# after it when it takes several values. [OPTIONS] and COMMAND are upper case: left alone.
_REQUIRED = re.compile(r"^\{(.+)\}(\.\.\.)?$")
_OPTIONAL = re.compile(r"^\[([a-z][a-z0-9_]*)\](\.\.\.)?$")


def unwrap(text: str | None) -> str | None:
    """Paragraphs (separated by a blank line) each on one line: the line breaks of a
    docstring wrapped in the source are not the reader's."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def usage_piece(piece: str) -> str:
    """`{directory}` -> `DIRECTORY`, `[directory]` -> `[DIRECTORY]`, `{members}...` ->
    `MEMBERS...`, `{[DIR] FILE}...` (a metavar of its own) -> `[DIR] FILE...`; anything else
    as it is."""
    if match := _REQUIRED.match(piece):
        name, dots = match.groups()
        return (name.upper() if name.islower() else name) + (dots or "")
    if match := _OPTIONAL.match(piece):
        name, dots = match.groups()
        return f"[{name.upper()}]" + (dots or "")
    return piece


def _untyped_flag(param: Parameter) -> None:
    """A flag takes no value: no type column (Typer would show `<bool>`)."""
    if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
        param.metavar = ""


class _Readable:
    """What HelpCommand and HelpGroup change of Typer's classes (a mixin, first in the MRO)."""

    params: list[Parameter]
    help: str | None
    short_help: str | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = unwrap(self.help)
        self.short_help = unwrap(self.short_help)
        for param in self.params:
            _untyped_flag(param)

    def get_help_option(self, ctx: Context) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            _untyped_flag(option)
        return option

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        return [usage_piece(p) for p in super().collect_usage_pieces(ctx)]  # type: ignore[misc]


class HelpCommand(_Readable, TyperCommand):
    """A command whose help reads as the module docstring says."""


class HelpGroup(_Readable, TyperGroup):
    """A group (the root, `team`, a task's commands) whose help reads so."""


def readable(app: typer.Typer) -> typer.Typer:
    """Gives every command and group of `app`, at any depth, the readable classes (where the
    command did not choose a class of its own). `app` itself is made with cls=HelpGroup."""
    for command in app.registered_commands:
        if command.cls in (None, TyperCommand):  # Typer's default
            command.cls = HelpCommand
    for group in app.registered_groups:
        if group.cls in (None, TyperGroup) or isinstance(group.cls, DefaultPlaceholder):
            group.cls = HelpGroup
        if group.typer_instance is not None:
            readable(group.typer_instance)
    return app
