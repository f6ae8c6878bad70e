"""Start-up time of the command line: `competition --help` against the `--help` of a
one-command Typer app, both measured here in the same run (target: at most 1.5x).

    python benchmarks/bench_cli.py [--repeat 15]

Each command runs in a fresh interpreter; the median of the repeats is reported.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ONE_COMMAND = '''import typer
app = typer.Typer()


@app.command()
def hello(name: str = "world") -> None:
    """Say hello."""
    print(name)


app()
'''


def median_seconds(command: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "one_command.py"
        script.write_text(ONE_COMMAND)
        reference = median_seconds([sys.executable, str(script), "--help"], args.repeat)
        ours = median_seconds([sys.executable, "-m", "competition", "--help"], args.repeat)
    ratio = ours / reference
    print(f"competition --help: {ours * 1000:.0f} ms; one-command Typer app --help: "
          f"{reference * 1000:.0f} ms; ratio {ratio:.2f}x (target <= 1.5x) "
          f"{'OK' if ratio <= 1.5 else 'OVER'}")


if __name__ == "__main__":
    main()
