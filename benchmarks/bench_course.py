"""A course portal under a class's load, against the same portal idle, in one run.

One `competition serve` process (a real subprocess on a free port, with serve's default job
runner: a LocalCluster of one worker per core) serves a course folder of `--competitions`
demo competitions (demo-nuclei, demo-em, demo-landmarks, then again); a generated roster of
`--accounts` students is imported into all of them (one token each, valid everywhere), and
the daily and hourly limits are raised so that every upload is accepted.

1. Idle (the reference): the pages are timed `--repeat` times each, then a few uploads are
   timed one at a time, each scored before the next is sent.
2. Loaded: `--submissions` distinct valid files (spread over the students and the
   competitions) are uploaded by 8 concurrent senders; while they arrive and until the last
   one is scored, the same pages are timed again, round after round.

Measured: the pages' latency (home `/`, each competition's `/c/SLUG/`, `/c/SLUG/leaderboard`,
`/c/SLUG/submissions`, and `/api/competitions`), median and p95, and upload-to-202
(`POST /c/SLUG/api/submissions` until its 202), median and p95, loaded and idle, with their
ratios. Targets (issue 28), loaded: pages median under 100 ms, upload to 202 under 300 ms.

    python benchmarks/bench_course.py [--competitions 3] [--accounts 60] [--submissions 200]
                                      [--repeat 20] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import json
import math
import os
import statistics
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from portal import REPO, Server, cli, set_rules

KINDS = ("demo-nuclei", "demo-em", "demo-landmarks")
SENDERS = 8
ENV = {"COMPETITION_TRACKING": "off"}  # scoring, not MLflow logging, is measured


def variant(folder: Path, kind: str, k: int) -> tuple[str, bytes]:
    """The `k`-th distinct valid submission of the demo competition in `folder` (distinct, so
    that none is a duplicate that is not scored)."""
    public = folder / "public"
    if kind == "demo-em":
        import numpy as np

        from competition.formats import em_tiff

        shape = em_tiff.read_stack((public / "sample_submission.tif").read_bytes()).shape
        stack = np.full(shape, 0.5, np.float32)
        stack.flat[k] = 0.25  # one pixel differs
        return f"v{k}.tif", em_tiff.write_stack(stack)
    sample = (public / "sample_submission.csv").read_text()
    lines = sample.splitlines()
    if kind == "demo-nuclei":  # one extra one-pixel nucleus
        return f"v{k}.csv", (sample + f"{lines[1].split(',')[0]},{k + 1} 1\n").encode()
    cells = lines[1].split(",")  # demo-landmarks: one coordinate moves
    cells[2] = f"{(k + 1) / 1000:.6f}"
    return f"v{k}.csv", "\n".join([lines[0], ",".join(cells), *lines[2:]]).encode() + b"\n"


def course(where: Path, n_competitions: int, n_accounts: int, limit: int
           ) -> tuple[Path, dict[str, str], list[str]]:
    """The course folder, its competitions (slug -> kind) and one token per student."""
    folder = where / "course"
    slugs: dict[str, str] = {}
    for k in range(n_competitions):
        kind = KINDS[k % len(KINDS)]
        slug = kind if k < len(KINDS) else f"{kind}-{k // len(KINDS) + 1}"
        cli(REPO, "prepare", kind, "--out", str(folder / slug), "--seed", str(k), env=ENV)
        set_rules(folder / slug, daily_limit=limit, uploads_per_hour=limit)
        slugs[slug] = kind
    roster = where / "roster.csv"
    roster.write_text("name,id,email\n" + "".join(
        f"Student {s:03d},s{s:03d},s{s:03d}@uni.example\n" for s in range(n_accounts)))
    sheet = where / "tokens.csv"
    cli(REPO, "roster", "import", *(str(folder / s) for s in slugs), str(roster),
        "--out", str(sheet), env=ENV)
    with sheet.open() as f:
        tokens = [row["token"] for row in csv.DictReader(f)]
    return folder, slugs, tokens


def pages(slugs: dict[str, str]) -> list[tuple[str, str]]:
    """(row of the table, path) of every page timed."""
    out = [("/", "/"), ("/api/competitions", "/api/competitions")]
    for slug in slugs:
        out += [("/c/SLUG/", f"/c/{slug}/"), ("/c/SLUG/leaderboard", f"/c/{slug}/leaderboard"),
                ("/c/SLUG/submissions", f"/c/{slug}/submissions")]
    return out


def time_pages(client: httpx.Client, slugs: dict[str, str], token: str,
               times: dict[str, list[float]], errors: Counter[str]) -> None:
    """One round: every page once."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/html"}
    for row, path in pages(slugs):
        start = time.perf_counter()
        try:
            status = client.get(path, headers=headers, timeout=60).status_code
        except httpx.HTTPError:
            status = 0  # no answer
        times.setdefault(row, []).append(time.perf_counter() - start)
        if status != 200:
            errors[f"GET {path}: {status}"] += 1


def upload(client: httpx.Client, slug: str, token: str, name: str, data: bytes
           ) -> tuple[float, int]:
    """Seconds until the portal answered, and its status (0: no answer)."""
    start = time.perf_counter()
    try:
        status = client.post(f"/c/{slug}/api/submissions",
                             headers={"Authorization": f"Bearer {token}"},
                             files={"file": (name, data)}, timeout=120).status_code
    except httpx.HTTPError:
        status = 0
    return time.perf_counter() - start, status


def statuses(folder: Path, slugs: dict[str, str]) -> Counter[str]:
    """The submissions of every competition, by status (read from their stores)."""
    from competition.board.board import Board
    from competition.board.prepared import PreparedCompetition

    counts: Counter[str] = Counter()
    for slug in slugs:
        board = Board(PreparedCompetition.open(folder / slug))
        counts.update(row["status"] for row in board.submissions.all())
        board.engine.dispose()
    return counts


def settle(folder: Path, slugs: dict[str, str], expected: int, timeout: float) -> Counter[str]:
    """Wait until `expected` submissions are stored and none is queued or being scored."""
    deadline = time.monotonic() + timeout
    while True:
        counts = statuses(folder, slugs)
        pending = sum(n for s, n in counts.items() if s in ("queued", "scoring", "pending"))
        if (sum(counts.values()) >= expected and not pending) or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def summary(values: list[float]) -> dict[str, float | int]:
    ordered = sorted(values)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return {"median_ms": round(1000 * statistics.median(ordered), 1),
            "p95_ms": round(1000 * p95, 1), "n": len(ordered)}


def run(n_competitions: int, n_accounts: int, n_submissions: int, repeat: int,
        where: Path) -> dict[str, Any]:
    n_reference = n_competitions * max(2, min(5, repeat // n_competitions))
    folder, slugs, tokens = course(where, n_competitions, n_accounts,
                                   limit=n_submissions + n_reference + 10)
    # Every upload: (slug, token, file name, bytes). Upload k goes to competition k mod C and
    # student (k // C + k) mod A, so each student sends to every competition (k mod A alone
    # would tie student s to competition s mod C when C divides A); the variants are numbered
    # per competition, so that no file is sent twice anywhere.
    number = {slug: itertools.count() for slug in slugs}
    plan = []
    for k in range(n_reference + n_submissions):
        slug = list(slugs)[k % n_competitions]
        name, data = variant(folder / slug, slugs[slug], next(number[slug]))
        plan.append((slug, tokens[(k // n_competitions + k) % n_accounts], name, data))
    reference, load = plan[:n_reference], plan[n_reference:]

    server = Server(REPO, folder, ENV, ready="/api/competitions")
    errors: Counter[str] = Counter()
    result: dict[str, Any] = {"idle": {}, "loaded": {}}
    try:
        with httpx.Client(base_url=server.url) as client:
            # 1. idle: pages, then uploads one at a time, each scored before the next
            idle_pages: dict[str, list[float]] = {}
            for _ in range(repeat):
                time_pages(client, slugs, tokens[0], idle_pages, errors)
            idle_uploads = []
            for k, (slug, token, name, data) in enumerate(reference):
                seconds, status = upload(client, slug, token, name, data)
                idle_uploads.append(seconds)
                if status != 202:
                    errors[f"POST /c/{slug}/api/submissions: {status}"] += 1
                settle(folder, slugs, k + 1, 300)
            # 2. loaded: the uploads, while the pages are timed round after round
            loaded_pages: dict[str, list[float]] = {}
            done = threading.Event()

            def measure() -> None:
                with httpx.Client(base_url=server.url) as own:
                    rounds = 0
                    while not done.is_set() or rounds < repeat:
                        time_pages(own, slugs, tokens[0], loaded_pages, errors)
                        rounds += 1

            timer = threading.Thread(target=measure)
            start = time.monotonic()
            timer.start()
            with ThreadPoolExecutor(SENDERS) as pool:
                sent = list(pool.map(lambda u: upload(client, *u), load))
            uploaded = time.monotonic() - start
            counts = settle(folder, slugs, len(plan), 60 + 30 * n_submissions)
            scored_in = time.monotonic() - start
            done.set()
            timer.join()
    finally:
        server.stop()
    for (slug, *_), (_, status) in zip(load, sent, strict=True):
        if status != 202:
            errors[f"POST /c/{slug}/api/submissions: {status}"] += 1
    rows = list(dict.fromkeys(row for row, _ in pages(slugs)))
    for label, page_times, upload_times in (("idle", idle_pages, idle_uploads),
                                            ("loaded", loaded_pages, [s for s, _ in sent])):
        result[label] = {"pages": {row: summary(page_times[row]) for row in rows},
                         "all_pages": summary(list(itertools.chain(*page_times.values()))),
                         "upload_to_202": summary(upload_times)}
    result["ratios"] = {
        row: round(result["loaded"]["pages"][row]["median_ms"]
                   / max(result["idle"]["pages"][row]["median_ms"], 0.1), 2)
        for row in rows}
    for key in ("all_pages", "upload_to_202"):
        result["ratios"][key] = round(result["loaded"][key]["median_ms"]
                                      / max(result["idle"][key]["median_ms"], 0.1), 2)
    result.update(
        setup={"competitions": slugs, "accounts": n_accounts, "submissions": n_submissions,
               "reference_uploads": n_reference, "repeat": repeat, "senders": SENDERS,
               "runner": f"LocalCluster (serve's default: one worker per core, "
                         f"{len(os.sched_getaffinity(0))} here)",
               "cores": len(os.sched_getaffinity(0))},
        seconds={"upload_all": round(uploaded, 1), "until_all_scored": round(scored_in, 1)},
        statuses=dict(counts), all_scored=counts.get("scored", 0) == len(plan),
        errors=dict(errors),
        targets={"pages_median_ms": 100, "upload_to_202_median_ms": 300},
        met={"pages": result["loaded"]["all_pages"]["median_ms"] < 100,
             "upload": result["loaded"]["upload_to_202"]["median_ms"] < 300})
    return result


def table(result: dict[str, Any]) -> str:
    setup = result["setup"]
    lines = [f"{len(setup['competitions'])} competitions ({', '.join(setup['competitions'])}), "
             f"{setup['accounts']} accounts, {setup['submissions']} submissions by "
             f"{setup['senders']} senders; {setup['runner']}",
             f"{'':<24}{'idle median':>12}{'p95':>9}{'loaded median':>15}{'p95':>9}"
             f"{'ratio':>8}{'n idle/loaded':>15}"]
    idle, loaded = result["idle"], result["loaded"]
    rows = [(row, idle["pages"][row], loaded["pages"][row]) for row in idle["pages"]]
    rows += [("all pages", idle["all_pages"], loaded["all_pages"]),
             ("upload to 202", idle["upload_to_202"], loaded["upload_to_202"])]
    ratios = {**result["ratios"], "all pages": result["ratios"]["all_pages"],
              "upload to 202": result["ratios"]["upload_to_202"]}
    for row, a, b in rows:
        lines.append(f"{row:<24}{a['median_ms']:>9.1f} ms{a['p95_ms']:>6.1f} ms"
                     f"{b['median_ms']:>12.1f} ms{b['p95_ms']:>6.1f} ms{ratios[row]:>7.2f}x"
                     f"{a['n']:>8}/{b['n']}")
    seconds, met = result["seconds"], result["met"]
    lines += [f"uploads sent in {seconds['upload_all']} s; all scored after "
              f"{seconds['until_all_scored']} s; statuses {result['statuses']}",
              f"targets (loaded): pages median < 100 ms: {'met' if met['pages'] else 'MISSED'}; "
              f"upload to 202 median < 300 ms: {'met' if met['upload'] else 'MISSED'}"]
    if result["errors"]:
        lines.append(f"errors: {result['errors']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--competitions", type=int, default=3)
    parser.add_argument("--accounts", type=int, default=60)
    parser.add_argument("--submissions", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=20,
                        help="rounds of page timings idle (and at least as many loaded)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.competitions, args.accounts, args.submissions, args.repeat,
                     Path(tmp))
    print(json.dumps(result, indent=1) if args.json else table(result))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
