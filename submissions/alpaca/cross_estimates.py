"""Leave-one-out ALPACA estimates of a landmark competition's training specimens, written
as a landmark CSV: each specimen landmarked from templates chosen among the others, the way
a hidden specimen is. A refiner that trains around these estimates sees ALPACA's real
errors (`submissions/xception_landmarks`: `--set training_estimates=FILE`).

    python submissions/alpaca/cross_estimates.py data/mouse-landmarks --out estimates.csv
    python submissions/alpaca/cross_estimates.py DIR --out F --config submissions/alpaca/smoke.yaml
    python submissions/alpaca/cross_estimates.py DIR --out F --cache data/landmarks-cv/transfers

`--cache` keeps (and reuses) every transfer, keyed by template and target name: e.g. those
of benchmarks/landmarks_cv.py, run on the same meshes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from competition.board.prepared import PreparedCompetition
from competition.entries import load_entry, resolve_config
from competition.errors import CompetitionError
from competition.formats import landmarks_csv

HERE = Path(__file__).resolve().parent


def main(directory: Path = typer.Argument(..., help="A prepared landmark competition."),
         out: Path = typer.Option(..., help="The landmark CSV to write."),
         config: Path | None = typer.Option(None, help="A configuration on top of "
                                            "config.yaml (e.g. smoke.yaml)."),
         set_: list[str] = typer.Option([], "--set", help="key=value overrides."),
         cache: Path | None = typer.Option(None, help="A folder of cached transfers "
                                           "(benchmarks/landmarks_cv.py's OUT/transfers).")
         ) -> None:
    err = Console(stderr=True)
    try:
        comp = PreparedCompetition.open(directory)
        settings = resolve_config(HERE, comp.task.name, config, set_)  # checks the task
        train = comp.task.load_train(comp.public_dir)
        if len(train.ids) < 2:
            raise CompetitionError(f"{directory}: leave-one-out needs two training specimens")
        with Progress(console=err, transient=True, disable=not err.is_terminal) as bar:
            task = bar.add_task("ALPACA, leaving each specimen out", total=len(train.ids))
            entry = load_entry(HERE)
            kept = None if cache is None else entry.TransferCache.for_settings(cache, settings)
            estimates = entry.cross_estimates(
                train, settings, progress=lambda _: bar.advance(task), cache=kept)
    except CompetitionError as e:
        err.print("[red]error:[/]", escape(str(e)), soft_wrap=True)
        sys.exit(2)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(landmarks_csv.write_points(
        [(i, n, estimates[s, k]) for s, i in enumerate(train.ids)
         for k, n in enumerate(train.landmarks)]))
    error = np.linalg.norm(estimates - train.points, axis=2)
    err.print(f"wrote {out}: {len(train.ids)} specimens; error against the manual landmarks: "
              f"mean {error.mean():.3f} mm, median {np.median(error):.3f} mm",
              soft_wrap=True, markup=False)


if __name__ == "__main__":
    typer.run(main)
