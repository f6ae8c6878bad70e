"""Checking and scoring a file, outside any board."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from competition.errors import CompetitionError, SubmissionError
from competition.interfaces.cli.output import (
    EXIT_REFUSED,
    err,
    escape,
    fmt,
    out,
    print_json,
)
from competition.interfaces.cli.root import app

if TYPE_CHECKING:
    from competition.tasks.base import ScoreResult


@app.command()
def validate(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    submission: Path = typer.Argument(..., help="The file to check."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Check a submission's format (no scoring)."""
    from competition.board import scoring
    from competition.board.prepared import PreparedCompetition

    comp = PreparedCompetition.open(directory)
    try:
        message = scoring.validate(comp, submission)
    except SubmissionError as e:
        if not as_json:
            raise
        print_json({"valid": False, "error": str(e)})  # as `submit --json` reports it
        err("[red]error:[/]", escape(str(e)))  # the one line on stderr, as without --json
        raise typer.Exit(EXIT_REFUSED) from None
    if as_json:
        print_json({"valid": True, "message": message})
    else:
        out(f"[green]OK[/] {escape(message)}")


@app.command()
def score(
    target: str = typer.Argument(..., help="A prepared competition's directory, or a task "
                                 "name (`competition tasks`) with --solution."),
    submission: Path = typer.Argument(..., help="The submission file."),
    solution: Path | None = typer.Option(None, help="Solution file (standalone form)."),
    reference: Path | None = typer.Option(None, help="Reference predictions to compare with "
                                          "(e.g. for a win rate)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    per_image: bool = typer.Option(False, "--per-image", help="Add the per-item table "
                                   "(images, slices, specimens...)."),
) -> None:
    """Score a submission exactly, against a prepared competition or any solution file."""
    try:
        result = _scored(target, submission, solution, reference)
    except SubmissionError as e:
        if not as_json:
            raise
        # One JSON object on stdout, as `submit --json` prints an invalid submission.
        print_json({"status": "invalid", "error": str(e)})
        err("[red]error:[/]", escape(str(e)))  # the one line on stderr, as without --json
        raise typer.Exit(EXIT_REFUSED) from None
    if as_json:
        print_json({"status": "scored", **result.as_json(per_image)})
    else:
        _print_score(result, per_image)


def _scored(target: str, submission: Path, solution: Path | None,
            reference: Path | None) -> ScoreResult:
    from competition.board import scoring

    if solution is not None:
        result = scoring.score_standalone(target, submission, solution, reference)
    else:
        from competition.board.prepared import PreparedCompetition
        from competition.tasks import task_names

        if target in task_names() and not Path(target).is_dir():
            raise CompetitionError(f"the task form needs --solution FILE (score {target} "
                                   "SUBMISSION --solution FILE)")
        if reference is not None:
            raise CompetitionError("--reference goes with --solution; a prepared competition "
                                   "uses its own reference")
        result = scoring.score(PreparedCompetition.open(target), submission)
    return result


def _print_score(result: ScoreResult, per_item: bool) -> None:
    from rich.table import Table

    from competition.tasks import get_task

    data = result.as_json(per_item)
    table = Table(title=f"{result.task}: {result.metric}", show_header=False)
    for key in ("score", "public", "private"):
        table.add_row(key, fmt(data[key]))
    shown = {"task", "metric", "score", "public", "private", "higher_is_better"}
    for key, value in data.items():
        if key not in shown and not isinstance(value, (dict, list)):
            table.add_row(escape(key), escape(fmt(value)))
    # A field of numbers by name (e.g. a precision per threshold) fits on one line.
    for key, value in data.items():
        if key not in shown and _numbers_by_name(value):
            table.add_row(escape(key), escape(" ".join(f"{k}:{fmt(v)}"
                                                       for k, v in value.items())))
    out(table)
    for detail in get_task(result.task).detail_tables(data):
        shown_table = Table(*(c.heading for c in detail.columns), title=detail.title)
        for row in detail.rows:
            shown_table.add_row(*(escape(c.cell(row)) for c in detail.columns))
        out(shown_table)
    if per_item:
        rows = data[f"per_{result.item_kind}"]
        if rows:
            items = Table(*rows[0].keys())
            for row in rows:
                items.add_row(*(escape(fmt(v)) for v in row.values()))
            out(items)


def _numbers_by_name(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values())
