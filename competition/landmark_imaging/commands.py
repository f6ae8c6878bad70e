"""The landmarks task's commands (`competition landmarks ...`), registered under the entry
point group `competition.commands`.

The CLI imports this module at every start: it imports Typer only, and each command imports
the imaging code (numpy, numba, meshes) when it runs.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, help="Landmark tools: patch images around landmark "
                  "estimates, for training elsewhere.")


@app.command()
def patches(
    directory: Path = typer.Argument(..., help="A prepared landmark competition."),
    folder: Path = typer.Option(..., "--out", help="Folder for images/ and index.csv."),
    split: str = typer.Option("train", help="train (with the manual landmarks' pixel "
                              "positions) or test (never with them)."),
    estimates: Path | None = typer.Option(None, help="Landmark CSV of estimates to centre on "
                                          "(required for test; for train, e.g. "
                                          "cross-fitted ALPACA estimates, which the README's "
                                          "'patch images and the refiner' section makes; "
                                          "train default: jittered manual landmarks)."),
    radii: list[float] = typer.Option([1.0, 2.0, 4.0], "--radius", help="Window radii (mm), "
                                      "repeatable."),
    shift: float = typer.Option(1.0, help="Shift (mm) of the fourth, shifted window."),
    jitter: float = typer.Option(0.4, help="Train: displacement (mm) of the estimates."),
    seed: int = typer.Option(0, help="Seed of the jitter."),
) -> None:
    """Write 224x224 surface patch images around landmark estimates (4 per landmark)."""
    from competition.landmark_imaging.patch_sets import write

    n = write(directory, folder, split, estimates, tuple(radii), shift, jitter, seed)
    typer.echo(f"wrote {n} images and {folder / 'index.csv'}")
