"""The root command, its global options, and the board a command works on."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from competition.interfaces.cli.helptext import HelpGroup

if TYPE_CHECKING:
    from competition.board.board import Board

app = typer.Typer(
    cls=HelpGroup,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="A local, Kaggle-style competition harness for biomedical image analysis.",
)


@app.callback()
def main_options(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what happens, and let "
                                 "TensorFlow and MLflow speak (their logs are off by "
                                 "default)."),
) -> None:
    """A local, Kaggle-style competition harness for biomedical image analysis."""
    from competition.interfaces.logs import configure

    configure(verbose)


def board_of(directory: Path) -> Board:
    from competition.board.board import Board
    from competition.board.prepared import PreparedCompetition

    return Board(PreparedCompetition.open(directory))
