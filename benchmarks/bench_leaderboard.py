"""Leaderboard and submission throughput on the embedded SQLite store.

    python benchmarks/bench_leaderboard.py [--submissions 10000] [--teams 100]

- Boards: 10,000 scored submissions (100 teams x 100, each with its per-image scores) are
  stored, then the public and the private board (with bootstrap intervals) are built; the
  reference in the same run is the bare SQL read of every scored row that any board needs.
  Target (issue 4): under 200 ms each.
- Throughput: distinct valid files submitted one after another to demo-nuclei through the
  store (validate, score in a child process, record), in submissions per minute.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import insert, select

from competition.board import leaderboard
from competition.board.board import Board, migrate
from competition.board.prepared import PreparedCompetition
from competition.board.store.schema import item_scores, submissions, teams
from competition.tasks import comparison
from competition.tasks.preparing import prepare
from competition.tracking import config as tracking


def median_ms(fn, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def fill(store: Board, n_submissions: int, n_teams: int) -> None:
    solution = store.comp.load_solution()
    items = [(image_id, image.usage) for image_id, image in solution.items()]
    is_public = np.array([usage == "Public" for _, usage in items])
    rng = np.random.default_rng(0)
    start = dt.datetime(2026, 11, 1)
    with store.engine.begin() as conn:
        conn.execute(insert(teams), [{"name": f"team{t:03d}", "created_at": start}
                                     for t in range(n_teams)])
        rows, item_rows = [], []
        for k in range(n_submissions):
            scores = np.clip(rng.normal(0.5, 0.15, len(items)), 0, 1)
            public = float(scores[is_public].mean())
            private = float(scores[~is_public].mean())
            rows.append({"id": k + 1, "team_id": k % n_teams + 1,
                         "submitted_at": start + dt.timedelta(minutes=k),
                         "file_name": f"s{k}.csv", "file_sha256": f"{k:064d}",
                         "file_path": f"x/{k}", "status": "scored", "counted": True,
                         "public_score": public, "private_score": private})
            item_rows += [{"submission_id": k + 1, "position": p, "item": item,
                           "usage": usage, "item_values": json.dumps([float(s)])}
                          for p, ((item, usage), s) in enumerate(zip(items, scores, strict=True))]
        conn.execute(insert(submissions), rows)
        conn.execute(insert(item_scores), item_rows)


def bench_boards(root: Path, n_submissions: int, n_teams: int) -> None:
    comp_dir = prepare("demo-nuclei", root / "boards")
    migrate(PreparedCompetition.open(comp_dir))  # its store, as `competition prepare` makes it
    store = Board(PreparedCompetition.open(comp_dir))
    fill(store, n_submissions, n_teams)

    def bare_read():
        with store.engine.connect() as conn:
            conn.execute(select(submissions.c.id, submissions.c.team_id,
                                submissions.c.public_score, submissions.c.private_score,
                                submissions.c.submitted_at)
                         .where(submissions.c.status == "scored")).all()

    reference = median_ms(bare_read)
    for name, board in (("public", leaderboard.public_board),
                        ("private", leaderboard.private_board)):
        ms = median_ms(lambda b=board: b(store))
        entries = board(store)
        print(f"{name:<8} board: {ms:7.1f} ms for {n_submissions} submissions of {n_teams} "
              f"teams ({len(entries)} ranked, bootstrap {comparison.N_BOOTSTRAP}x); "
              f"bare read of the rows {reference:.1f} ms (ratio {ms / reference:.1f}x); "
              f"target < 200 ms: {'met' if ms < 200 else 'MISSED'}")


def bench_throughput(root: Path, n: int, tracked: bool) -> float:
    """Submissions per minute, without MLflow logging or with it (two embedded SQLite
    stores, as configured by default)."""
    os.environ[tracking.SWITCH_ENV] = "on" if tracked else "off"
    if tracked:
        config = root / "mlflow.yaml"
        config.write_text("tracking_uri: sqlite:///participants.db\n"
                          "organizer_tracking_uri: sqlite:///organizers.db\n"
                          "artifact_location: artifacts\n")
        os.environ[tracking.CONFIG_ENV] = str(config)
    comp_dir = prepare("demo-nuclei", root / f"throughput-{'tracked' if tracked else 'bare'}")
    comp = PreparedCompetition.open(comp_dir)
    migrate(comp)
    comp.config.rules.daily_limit = n + 2
    comp.config.rules.uploads_per_hour = n + 2  # one team uploads n + 1 files at once
    store = Board(comp)
    sample = (comp.public_dir / "sample_submission.csv").read_text()
    first_id = sample.splitlines()[1].split(",")[0]
    paths = []
    for k in range(n + 1):
        path = root / f"sub{k}.csv"
        path.write_text(sample + f"{first_id},{k + 1} 1\n")
        paths.append(path)
    # One untimed submission first: it creates the stores (MLflow's schema, once per store).
    assert store.submissions.submit(paths.pop(0), "team").status == "scored"
    start = time.perf_counter()
    for path in paths:
        assert store.submissions.submit(path, "team").status == "scored"
    seconds = time.perf_counter() - start
    print(f"submit   : {n} submissions to demo-nuclei in {seconds:.1f} s = "
          f"{60 * n / seconds:.0f} per minute sustained (validate, score in a child process, "
          f"record; one after another); MLflow logging {'on' if tracked else 'off'}")
    return seconds / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--submissions", type=int, default=10_000)
    parser.add_argument("--teams", type=int, default=100)
    parser.add_argument("--throughput", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_boards(Path(tmp), args.submissions, args.teams)
        bare = bench_throughput(Path(tmp), args.throughput, tracked=False)
        logged = bench_throughput(Path(tmp), args.throughput, tracked=True)
        print(f"MLflow logging (two runs per submission, embedded SQLite) costs "
              f"{1000 * (logged - bare):.0f} ms per submission (ratio {logged / bare:.1f}x)")


if __name__ == "__main__":
    main()
