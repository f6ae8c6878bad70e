"""Every help page reads as a person reads it: no `<bool>` after a flag, no `{directory}` in a
usage line, no float written to 16 digits, no pointer into the source (`x/y.py`), and no
sentence broken at the line end of a docstring."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from competition.interfaces.cli import app
from competition.interfaces.cli.helptext import unwrap, usage_piece

BAD = {
    "a type after a flag": re.compile(r"<bool>"),
    "a {placeholder} in the usage": re.compile(r"\{[^}\s]*\}"),
    "a float written out to its last digit": re.compile(r"\d\.\d{6,}"),
    "a pointer into the source": re.compile(r"[\w/]+\.py\b"),
}


def command_paths() -> Iterator[list[str]]:
    def walk(command, path: list[str]) -> Iterator[list[str]]:
        yield path
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            if not sub.hidden:
                yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


PATHS = list(command_paths())


def test_the_walk_finds_every_command_and_group():
    names = {" ".join(p) for p in PATHS}
    assert {"", "serve", "ensemble", "team", "team add", "landmarks patches"} <= names
    assert len(PATHS) > 25


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "competition")
@pytest.mark.parametrize("columns", [80, 120])
def test_help_pages_have_no_placeholders_long_floats_or_source_paths(path, columns):
    done = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(columns)})
    assert done.exit_code == 0, done.output
    assert "Usage:" in done.output
    for what, pattern in BAD.items():
        found = pattern.findall(done.output)
        assert not found, f"{' '.join(path) or 'competition'} --help shows {what}: {found}"


def test_the_list_of_commands_shows_each_summary_whole():
    """A docstring's first paragraph is the command's line in `competition --help`: a
    sentence, on as many screen lines as it needs, never broken where the source broke it."""
    group = typer.main.get_command(app)
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        for paragraph in (command.help or "").split("\n\n"):
            assert "\n" not in paragraph, f"{name}: {paragraph!r}"
    done = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    lines = [ln for ln in done.output.splitlines() if "│ migrate " in ln]
    assert lines and lines[0].rstrip(" │").endswith("give the competition an id."), lines


def test_flags_show_no_type_but_valued_options_do():
    done = CliRunner().invoke(app, ["prepare", "--help"], env={"COLUMNS": "120"})
    force = next(ln for ln in done.output.splitlines() if "--force" in ln)
    assert "<bool>" not in force and "Replace an existing directory" in force
    seed = next(ln for ln in done.output.splitlines() if "--seed" in ln)
    assert "<int>" in seed
    assert "Usage: root prepare [OPTIONS] KIND" in done.output


@pytest.mark.parametrize(("piece", "shown"), [
    ("{directory}", "DIRECTORY"), ("[directory]", "[DIRECTORY]"),
    ("{members}...", "MEMBERS..."), ("{[DIR] FILE}...", "[DIR] FILE..."),
    ("[OPTIONS]", "[OPTIONS]"), ("COMMAND [ARGS]...", "COMMAND [ARGS]..."),
])
def test_usage_pieces(piece, shown):
    assert usage_piece(piece) == shown


def test_unwrap_joins_lines_and_keeps_paragraphs():
    doc = """First line
    goes on.

    Second
    paragraph."""
    assert unwrap(doc) == "First line goes on.\n\nSecond paragraph."
    assert unwrap(None) is None
