"""Scoring as jobs, measured against the design before it, in one run.

1. Responsiveness: 50 slow scorings (each scorer sleeps 30 s) are submitted at once to a
   portal; meanwhile `/leaderboard` and `/submissions` are timed. Before: the portal of the
   commit before this work (`--before REV`, exported with `git archive`; it scored inside the
   request, in a thread of a 40-thread pool). After: `competition serve` (a LocalCluster of
   two workers). Target after: median < 200 ms and maximum < 1 s.
2. Scaling: 200 queued jobs that each burn 1 s of CPU, on a LocalCluster of 1 worker, then
   of 2 (one thread each). Target: at least 1.7x faster on 2 (on 2 free cores).
3. The per-job overhead of queueing, on demo submissions: submit -> scored through the portal,
   against scoring the same files in-process with `Board.submissions.submit`.

    python benchmarks/bench_jobs.py [--before 76a9cd8] [--jobs 200] [--skip-before]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
from portal import REPO, Server, cli, set_rules


def competition(code: Path, where: Path, teams: int, **rules: int) -> tuple[Path, dict]:
    root = where / "comp"
    cli(code, "prepare", "demo-nuclei", "--out", str(root))
    set_rules(root, **rules)
    tokens = {}
    for k in range(teams):
        out = cli(code, "team", "add", str(root), f"team{k:02d}")
        tokens[f"team{k:02d}"] = next(line.split()[-1] for line in out.splitlines()
                                      if line.startswith("token:"))
    return root, tokens


def files(root: Path, where: Path, n: int) -> list[bytes]:
    sample = (root / "public" / "sample_submission.csv").read_text()
    first = sample.splitlines()[1].split(",")[0]
    return [(sample + f"{first},{k + 1} 1\n").encode() for k in range(n)]


def upload(url: str, token: str, data: bytes, name: str, timeout: float) -> int:
    try:
        r = httpx.post(url + "/api/submissions", headers={"Authorization": f"Bearer {token}"},
                       files={"file": (name, data)}, timeout=timeout)
        return r.status_code
    except httpx.HTTPError:
        return 0


def latencies(url: str, token: str, seconds: float) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"/leaderboard": [], "/submissions": []}
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/html"}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for path in times:
            start = time.perf_counter()
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(url + path, headers=headers, timeout=60)
            times[path].append(time.perf_counter() - start)
    return times


def responsiveness(code: Path, where: Path, label: str, env: dict[str, str],
                   *extra: str) -> None:
    root, tokens = competition(code, where, teams=10, daily_limit=5)
    server = Server(code, root, env, *extra)
    try:
        data = files(root, where, 50)
        teams = list(tokens)
        senders = [threading.Thread(target=upload, args=(server.url, tokens[teams[k % 10]],
                                                         data[k], f"v{k}.csv", 120))
                   for k in range(50)]
        for t in senders:
            t.start()
        time.sleep(2)  # the 50 uploads are in (queued, or holding request threads)
        times = latencies(server.url, tokens[teams[0]], 20)
        for t in senders:
            t.join(120)
    finally:
        server.stop()
    for path, values in times.items():
        print(f"  {label:<7} {path:<13} median {1000 * statistics.median(values):8.1f} ms, "
              f"max {1000 * max(values):8.1f} ms ({len(values)} requests)")


def scaling(where: Path, jobs: int, workers: int) -> float:
    root, tokens = competition(REPO, where, teams=1, daily_limit=jobs + 10,
                               uploads_per_hour=jobs + 10)
    env = {"COMPETITION_TEST_SCORER_BURN": "1", "COMPETITION_TRACKING": "off"}
    server = Server(REPO, root, env, "--workers", str(workers),
                    "--scorer", "tests.slow_submit:BurnScorer")
    try:
        data = files(root, where, jobs)
        token = next(iter(tokens.values()))
        start = time.monotonic()
        for k in range(jobs):
            assert upload(server.url, token, data[k], f"b{k}.csv", 60) == 202
        from competition.board.board import Board
        from competition.board.prepared import PreparedCompetition

        board = Board(PreparedCompetition.open(root))
        while True:
            rows = board.submissions.all()
            if sum(r["status"] == "scored" for r in rows) == jobs:
                break
            time.sleep(0.5)
        return time.monotonic() - start
    finally:
        server.stop()


def overhead(where: Path, n: int = 20) -> None:
    from competition.board.board import Board
    from competition.board.prepared import PreparedCompetition

    env = {"COMPETITION_TRACKING": "off"}
    root, tokens = competition(REPO, where / "queued", teams=1, daily_limit=100,
                               uploads_per_hour=100)
    data = files(root, where, n)
    server = Server(REPO, root, env, "--workers", "2")
    token = next(iter(tokens.values()))
    queued = []
    try:
        for k in range(n):
            start = time.perf_counter()
            r = httpx.post(server.url + "/api/submissions", params={"wait": 60},
                           headers={"Authorization": f"Bearer {token}"},
                           files={"file": (f"o{k}.csv", data[k])}, timeout=90)
            assert r.json()["status"] == "scored"
            queued.append(time.perf_counter() - start)
    finally:
        server.stop()
    inline_root, _ = competition(REPO, where / "inline", teams=0, daily_limit=100,
                                 uploads_per_hour=100)
    os.environ["COMPETITION_TRACKING"] = "off"
    board = Board(PreparedCompetition.open(inline_root))
    inline = []
    for k in range(n):
        path = where / f"i{k}.csv"
        path.write_bytes(data[k])
        start = time.perf_counter()
        assert board.submissions.submit(path, "inline").status == "scored"
        inline.append(time.perf_counter() - start)
    q, i = statistics.median(queued), statistics.median(inline)
    print(f"  demo-nuclei, {n} files: submit -> scored through the portal's queue median "
          f"{1000 * q:.0f} ms; scored in-process (CLI path) median {1000 * i:.0f} ms; "
          f"queueing adds {1000 * (q - i):.0f} ms a job")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default="76a9cd8", help="the commit of the old design")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--skip-before", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        print("1. /leaderboard and /submissions with 50 slow scorings (30 s each) submitted")
        if not args.skip_before:
            before = where / "before-code"
            before.mkdir()
            archive = subprocess.run(["git", "archive", args.before], cwd=REPO,
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
            (where / "before").mkdir()
            responsiveness(before, where / "before", "before",
                           {"COMPETITION_SCORER_PAUSE": "30", "COMPETITION_TRACKING": "off"})
        (where / "after").mkdir()
        responsiveness(REPO, where / "after", "after",
                       {"COMPETITION_TEST_SCORER_PAUSE": "30", "COMPETITION_TRACKING": "off"},
                       "--workers", "2", "--scorer", "tests.slow_submit:SlowScorer")
        print(f"2. {args.jobs} jobs burning 1 s of CPU each")
        seconds = {}
        for workers in (1, 2):
            (where / f"scale{workers}").mkdir()
            seconds[workers] = scaling(where / f"scale{workers}", args.jobs, workers)
            print(f"  {workers} worker(s): {seconds[workers]:.1f} s")
        print(f"  speed-up {seconds[1] / seconds[2]:.2f}x (target >= 1.7x)")
        print("3. the overhead of queueing")
        (where / "overhead").mkdir()
        overhead(where / "overhead")
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
