"""The `competition` command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from competition.errors import CompetitionError
from competition.prepare import KINDS
from competition.prepare import prepare as prepare_competition
from competition.prepared import PreparedCompetition
from competition.tasks import TASKS, ScoreResult

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="A local, Kaggle-style competition harness for biomedical image analysis.",
)
# No emoji codes or markup in user data: ":x:" in a file must print as ":x:".
out = Console(emoji=False, highlight=False)
err = Console(stderr=True, emoji=False, highlight=False)


@app.command()
def prepare(
    kind: str = typer.Argument(..., help=f"One of: {', '.join(KINDS)}."),
    out_dir: Path = typer.Option(..., "--out", help="Directory to create."),
    source: Path | None = typer.Option(None, help="The downloaded data set (real kinds)."),
    seed: int = typer.Option(0, help="Seed of the splits; same seed and source, same bytes."),
    public_fraction: float = typer.Option(1 / 3, help="Share of the test set that is Public."),
    test_fraction: float | None = typer.Option(None, help="Share of labelled data held out."),
    force: bool = typer.Option(False, help="Replace an existing directory."),
    name: str | None = typer.Option(None, help="Competition name (default: the kind)."),
) -> None:
    """Turn a data set (or a synthetic demo) into a competition with a hidden test split."""
    path = prepare_competition(kind, out_dir, source, seed, public_fraction, test_fraction,
                               force, name)
    comp = PreparedCompetition.open(path)
    counts = comp.config.get("counts", {})
    out.print(f"[green]prepared[/] {path} ({comp.task.name}: "
              + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")")


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("data/demo"), "--out", help="Where to prepare the demos."),
    seed: int = typer.Option(0, help="Seed of the synthetic data and the splits."),
) -> None:
    """Run the whole loop on the three synthetic competitions (prepare, validate, score)."""
    from competition import demo as demo_module

    with out.status("Preparing and scoring the demo competitions..."):
        rows = demo_module.run(out_dir, seed)
    table = Table("competition", "submission", "metric", "public", "private",
                  title="Demo competitions (organizer view: private scores shown)")
    for row in rows:
        table.add_row(row["competition"], row["submission"], row["metric"],
                      _fmt(row["public"]), _fmt(row["private"]))
    out.print(table)
    out.print(f"Competitions are in {out_dir}/; try `competition info {out_dir}/demo-nuclei`.")


@app.command()
def info(directory: Path = typer.Argument(..., help="A prepared competition.")) -> None:
    """Show a competition's task, sizes and the rules in force."""
    comp = PreparedCompetition.open(directory)
    out.print(f"[bold]{comp.config.get('title', comp.name)}[/] ({comp.name})")
    out.print(f"task: {comp.task.name} — {comp.task.metric}")
    for key, value in (comp.config.get("counts") or {}).items():
        out.print(f"  {key}: {value}")
    out.print("rules:")
    for key, value in comp.rules.items():
        out.print(f"  {key}: {value}")


@app.command()
def validate(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    submission: Path = typer.Argument(..., help="The file to check."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Check a submission's format (no scoring)."""
    from competition import scoring

    comp = PreparedCompetition.open(directory)
    message = scoring.validate(comp, submission)
    if as_json:
        print(json.dumps({"valid": True, "message": message}))
    else:
        out.print(f"[green]OK[/] {message}")


@app.command()
def score(
    target: str = typer.Argument(..., help="A prepared competition's directory, or a task "
                                 f"({', '.join(TASKS)}) with --solution."),
    submission: Path = typer.Argument(..., help="The submission file."),
    solution: Path | None = typer.Option(None, help="Solution file (standalone form)."),
    reference: Path | None = typer.Option(None, help="Reference predictions for the win rate "
                                          "(landmarks)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    per_image: bool = typer.Option(False, "--per-image", help="Add the per-image/slice/"
                                   "specimen table."),
) -> None:
    """Score a submission exactly, against a prepared competition or any solution file."""
    from competition import scoring

    if solution is not None:
        result = scoring.score_standalone(target, submission, solution, reference)
    else:
        if target in TASKS and not Path(target).is_dir():
            raise CompetitionError(f"the task form needs --solution FILE (score {target} "
                                   "SUBMISSION --solution FILE)")
        if reference is not None:
            raise CompetitionError("--reference goes with --solution; a prepared competition "
                                   "uses its own reference")
        result = scoring.score(PreparedCompetition.open(target), submission)
    if as_json:
        print(json.dumps(result.as_json(per_image), allow_nan=False))
    else:
        _print_score(result, per_image)


def _print_score(result: ScoreResult, per_item: bool) -> None:
    data = result.as_json(per_item)
    table = Table(title=f"{result.task}: {result.metric}", show_header=False)
    for key in ("score", "public", "private"):
        table.add_row(key, _fmt(data[key]))
    for key, value in data.items():
        if key in ("task", "metric", "score", "public", "private", "higher_is_better") or \
                isinstance(value, (dict, list)):
            continue
        table.add_row(key, _fmt(value))
    if "per_threshold" in data:
        table.add_row("per_threshold", " ".join(f"{k}:{_fmt(v)}"
                                                 for k, v in data["per_threshold"].items()))
    out.print(table)
    if per_item:
        rows = data[f"per_{result.item_kind}"]
        if rows:
            items = Table(*rows[0].keys())
            for row in rows:
                items.add_row(*(_fmt(v) for v in row.values()))
            out.print(items)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def main() -> None:
    """Entry point: user errors become one clear line and exit code 2, never a traceback."""
    try:
        app(standalone_mode=False)
    except CompetitionError as e:
        err.print("[red]error:[/]", escape(str(e)), soft_wrap=True)
        sys.exit(e.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except (typer.Exit, SystemExit) as e:
        code = getattr(e, "exit_code", getattr(e, "code", 0))
        sys.exit(code)
    except Exception as e:  # click usage errors and anything unexpected
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if os.environ.get("COMPETITION_DEBUG"):
            raise
        err.print("[red]internal error:[/]", escape(f"{type(e).__name__}: {e}"),
                  "(set COMPETITION_DEBUG=1 for the traceback, and please report it)")
        sys.exit(1)


if __name__ == "__main__":
    main()
