"""The toy task's own commands (`competition toy ...`), registered by entry point
(`competition.commands`). Typer only at import: the command loads the task when it runs."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, help="Toy task tools.")


@app.command()
def line(directory: Path = typer.Argument(..., help="A prepared toy competition.")) -> None:
    """Fit y = a x + b to the training data and print it."""
    import numpy as np

    from toy_task import ToyTask

    train = ToyTask().load_train(directory / "public")
    slope, intercept = np.polyfit(train.x, train.y, 1)
    typer.echo(f"y = {slope:.2f} x + {intercept:.2f}")


@app.command()
def count(directory: Path = typer.Argument(..., help="A prepared toy competition.")) -> None:
    """Print how many training items there are."""
    from toy_task import ToyTask

    typer.echo(f"{len(ToyTask().load_train(directory / 'public').ids)} training items")
