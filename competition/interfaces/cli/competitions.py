"""Preparing and looking at competitions."""

from __future__ import annotations

from pathlib import Path

import typer

from competition.interfaces.cli.output import (
    console,
    escape,
    fmt,
    out,
)
from competition.interfaces.cli.root import app


@app.command()
def tasks() -> None:
    """List the installed tasks and the kinds of data set each prepares."""
    from rich.table import Table

    from competition.tasks import get_task, task_names

    table = Table("task", "metric", "kinds (competition prepare KIND)")
    for name in task_names():
        task = get_task(name)
        kinds = "\n".join(f"{kind}: {source.description}"
                          for kind, source in task.sources().items())
        table.add_row(name, task.metric_label, kinds)
    out(table)


@app.command()
def prepare(
    kind: str = typer.Argument(..., help="A kind of data set (`competition tasks` lists "
                               "them), e.g. dsb2018 or demo-nuclei."),
    out_dir: Path = typer.Option(..., "--out", help="Directory to create."),
    source: Path | None = typer.Option(None, help="The downloaded data set (real kinds)."),
    seed: int = typer.Option(0, help="Seed of the splits; same seed and source, same bytes."),
    public_fraction: float | None = typer.Option(
        None, help="Share of the test set that is Public (default: the rules' default, "
        "rules.public_fraction)."),
    test_fraction: float | None = typer.Option(None, help="Share of labelled data held out."),
    force: bool = typer.Option(False, help="Replace an existing directory."),
    name: str | None = typer.Option(None, help="Competition name (default: the kind)."),
    synthetic: str | None = typer.Option(
        None, metavar="SPEC", help="Synthetic kinds: what to generate, as the kind's task "
        "describes it (e.g. a volume's size 1300x1040x1900)."),
    option: list[str] = typer.Option([], "--option", metavar="KEY=VALUE", help="An option "
                                     "of the kind's preparer (repeatable; the task's "
                                     "README lists them); an unknown key names the kind's "
                                     "options."),
    submission: str = typer.Option(
        "files", help="What participants upload: files (predictions), code (a zip of an "
        "entry folder, run sandboxed on the test inputs, which stay unpublished) or both."),
) -> None:
    """Turn a data set (or a synthetic demo) into a competition with a hidden test split,
    and make its submission store."""
    from competition.board.board import migrate
    from competition.board.prepared import PreparedCompetition
    from competition.tasks.preparing import parse_options
    from competition.tasks.preparing import prepare as prepare_competition

    path = prepare_competition(kind, out_dir, source=source, seed=seed,
                               public_fraction=public_fraction, test_fraction=test_fraction,
                               force=force, name=name, synthetic=synthetic,
                               options=parse_options(option), submission=submission)
    comp = PreparedCompetition.open(path)
    migrate(comp)  # the store, at the schema revision this code needs
    counts = comp.config.counts
    out(f"[green]prepared[/] {path} ({comp.task.name}: "
        + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")")


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("data/demo"), "--out", help="Where to prepare the demos."),
    seed: int = typer.Option(0, help="Seed of the synthetic data and the splits."),
) -> None:
    """Run the whole loop on the synthetic competitions (prepare, validate, submit, rank)."""
    from rich.table import Table

    from competition.interfaces import demo as demo_module
    from competition.tracking.config import load_config

    with console().status("Preparing and scoring the demo competitions..."):
        rows = demo_module.run(out_dir, seed)
    table = Table(title="Demo competitions (organizer view: private scores shown)")
    table.add_column("competition", no_wrap=True)
    for column in ("team", "metric", "public", "private", "rank"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(row["competition"], row["team"], row["metric"], fmt(row["public"]),
                      fmt(row["private"]), str(row["rank"]))
    out(table)
    if any(row["reused"] for row in rows):
        out(f"{out_dir}/ already held these demos (same seed): reused as they are; nothing was "
            "submitted or logged to MLflow again. Delete the folder for a fresh start.")
    first = rows[0]["competition"]
    out(f"Competitions are in {out_dir}/; try `competition leaderboard {out_dir}/{first}` or "
        f"`competition serve {out_dir}/{first}`.")
    config = load_config()
    if config.enabled:
        out(f"Every scored submission is logged to MLflow ({config.tracking_uri}); "
            "`competition ui` shows them, `competition run DIR submissions/unet` trains a "
            "baseline and `competition ensemble` combines runs.")


@app.command()
def info(directory: Path = typer.Argument(..., help="A prepared competition.")) -> None:
    """Show a competition's task, sizes and the rules in force."""
    from competition.board.prepared import PreparedCompetition

    comp = PreparedCompetition.open(directory)
    out(f"[bold]{escape(comp.title)}[/] ({escape(comp.name)})")
    # The key of its MLflow experiments and runs (the name is shared by folders of a kind).
    out(f"id: {comp.config.id or f'none yet (`competition migrate {escape(str(directory))}`)'}")
    out(f"task: {comp.task.name} — {comp.task.metric}")
    for key, value in comp.config.counts.items():
        out(f"  {key}: {value}")
    out("rules:")
    for key, value in comp.rules.model_dump().items():
        out(f"  {key}: {value}")
    out(f"  score_direction: {comp.task.direction} (set by the task)")
    out(f"submission: {comp.config.submission}")
    if comp.takes_code:
        out("code (each run's limits):")
        for key, value in comp.config.code.model_dump().items():
            out(f"  {key}: {value}")


@app.command()
def reference(
    directory: Path = typer.Argument(..., help="A prepared competition whose task compares "
                                     "with reference predictions (e.g. landmarks)."),
    file: Path = typer.Argument(..., help="A valid submission, e.g. the ALPACA baseline's."),
) -> None:
    """Install FILE as the reference scores are compared with (private data)."""
    from competition.board.prepared import PreparedCompetition

    target = PreparedCompetition.open(directory).install_reference(file)
    out(f"installed {file} as {target}; scores now report the comparison with it "
        "(`competition rescore DIR` records it for stored submissions)")
