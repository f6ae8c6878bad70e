"""Checking and scoring a file, outside any board."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from competition.errors import CompetitionError
from competition.interfaces.cli.output import (
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

    message = scoring.validate(PreparedCompetition.open(directory), submission)
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
                                          "(e.g. for the landmarks' win rate)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    per_image: bool = typer.Option(False, "--per-image", help="Add the per-item table "
                                   "(images, slices, specimens...)."),
) -> None:
    """Score a submission exactly, against a prepared competition or any solution file."""
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
    if as_json:
        print_json(result.as_json(per_image))
    else:
        _print_score(result, per_image)


def _print_score(result: ScoreResult, per_item: bool) -> None:
    from rich.table import Table

    data = result.as_json(per_item)
    table = Table(title=f"{result.task}: {result.metric}", show_header=False)
    for key in ("score", "public", "private"):
        table.add_row(key, fmt(data[key]))
    for key, value in data.items():
        if key in ("task", "metric", "score", "public", "private", "higher_is_better") or \
                isinstance(value, (dict, list)):
            continue
        table.add_row(escape(key), escape(fmt(value)))
    if "per_threshold" in data:
        table.add_row("per_threshold", " ".join(f"{k}:{fmt(v)}"
                                                 for k, v in data["per_threshold"].items()))
    out(table)
    if data.get("per_landmark"):
        _print_per_landmark(data["per_landmark"])
    if per_item:
        rows = data[f"per_{result.item_kind}"]
        if rows:
            items = Table(*rows[0].keys())
            for row in rows:
                items.add_row(*(escape(fmt(v)) for v in row.values()))
            out(items)


def _print_per_landmark(rows: list[dict[str, Any]]) -> None:
    """The published layout: landmark, specimens, errors, and how often the submission beats
    the reference (e.g. ALPACA) on that landmark."""
    from rich.table import Table

    with_reference = "win_rate" in rows[0]
    columns = ["landmark", "specimens", "RMSE", "mean", "median"]
    if with_reference:
        columns += ["% better than reference", "ties", "reference mean"]
    table = Table(*columns, title="per landmark (mm)")
    for row in rows:
        cells = [escape(str(row["landmark"])), str(row["n"]), f"{row['rmse']:.3f}",
                 f"{row['mean']:.3f}", f"{row['median']:.3f}"]
        if with_reference:
            cells += [f"{row['win_rate']:.1f}", str(row["ties"]), f"{row['reference_mean']:.3f}"]
        table.add_row(*cells)
    out(table)
