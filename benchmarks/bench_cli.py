"""Start-up time of the command line: `competition --help` against the `--help` of a
one-command Typer app, both measured here in the same run (target: at most 1.5x); then what
MLflow logging adds to one `competition submit` on the nuclei demo (the same command with
tracking on and off, alternating, after one untimed submission has created the stores).

    python benchmarks/bench_cli.py [--repeat 15] [--submits 6]

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


def submit_cost(root: Path, repeat: int) -> None:
    """Median wall time of `competition submit` with MLflow logging off and on."""
    import os

    comp = root / "demo-nuclei"
    cli = [sys.executable, "-m", "competition"]
    subprocess.run([*cli, "prepare", "demo-nuclei", "--out", str(comp)], check=True,
                   stdout=subprocess.DEVNULL)
    doc = (comp / "competition.yaml").read_text()
    doc = doc.replace("daily_limit: 5", f"daily_limit: {4 * repeat + 4}")
    doc = doc.replace("uploads_per_hour: 20", f"uploads_per_hour: {4 * repeat + 4}")
    (comp / "competition.yaml").write_text(doc)
    config = root / "mlflow.yaml"
    config.write_text(f"tracking_uri: sqlite:///{root / 'participants.db'}\n"
                      f"organizer_tracking_uri: sqlite:///{root / 'organizers.db'}\n"
                      f"artifact_location: {root / 'artifacts'}\n"
                      f"organizer_artifact_location: {root / 'artifacts-organizers'}\n")
    sample = (comp / "public" / "sample_submission.csv").read_text()
    first_id = sample.splitlines()[1].split(",")[0]
    times: dict[str, list[float]] = {"off": [], "on": []}
    for k in range(2 * repeat + 1):
        mode = "on" if k % 2 == 0 else "off"
        path = root / f"s{k}.csv"
        path.write_text(sample + f"{first_id},{k + 1} 1\n")
        env = {**os.environ, "COMPETITION_TRACKING": mode, "COMPETITION_MLFLOW_CONFIG": str(config)}
        start = time.perf_counter()
        subprocess.run([*cli, "submit", str(comp), str(path), "--team", "bench"], check=True,
                       stdout=subprocess.DEVNULL, env=env)
        if k:  # the first one creates both MLflow stores
            times[mode].append(time.perf_counter() - start)
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    print(f"competition submit (demo-nuclei): {off:.2f} s with MLflow logging off, {on:.2f} s "
          f"on; logging adds {on - off:.2f} s ({repeat} of each, medians)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--submits", type=int, default=6)
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
    with tempfile.TemporaryDirectory() as tmp:
        submit_cost(Path(tmp), args.submits)


if __name__ == "__main__":
    main()
