"""Scoring throughput on normal files, with and without the scoring limits (issue 16).

    python benchmarks/bench_scoring.py [--data ../shared/data] [--rounds 3] [--repeat 5]
                                       [--head HEAD | --head ""]

Each competition's day-one file (`task.naive_submission(public)`) is scored in a child
process, as the board scores a submission (`ChildScorer.score`, no tracking details), in
three ways, each in a fresh process, in alternating rounds:

- "before": this tree, `ChildScorer(bounded=False)`: no memory or CPU-time limits;
- "after": this tree, `ChildScorer()`: the competition's limits set in the child (and its
  EM workers' shares), the same bounded readers;
- "head" (when `--head` names a git revision and the tree has git): the code of that
  revision, exported to a temporary folder: the readers before the bounded checks too.

Competitions: the three demos, and the real DSB 2018 and ISBI 2012 data when `--data` holds
them. Printed: the median seconds per scoring of each way, scorings per minute, and the ratios
after/before and after/head. Target: after no more than 10 % slower than before.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMOS = ("demo-nuclei", "demo-em", "demo-landmarks")
REAL = {"dsb2018": "dsb2018", "isbi2012": "isbi2012"}


def worker(mode: str, cases: list[list[str]], repeat: int) -> None:
    """In a fresh process: score each (competition, file) `repeat` times; print seconds."""
    from competition.board.prepared import PreparedCompetition
    from competition.board.scorer_process import ChildScorer

    scorer = ChildScorer(bounded=False) if mode == "before" else ChildScorer()
    out: dict[str, list[float]] = {}
    for root, path in cases:
        comp = PreparedCompetition.open(root)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            result = scorer.score(comp, Path(path), Path(path).name, details=False)
            times.append(time.perf_counter() - start)
            if str(result.status) != "scored":
                raise SystemExit(f"{root}: {result.status}: {result.error}")
        out[Path(root).name] = times
    print(json.dumps(out))


def old_config_copy(root: Path, dest: Path, head_tree: Path) -> Path:
    """A copy of a competition whose competition.yaml keeps only the keys that the code of
    `head_tree` knows (newer rules would be unknown keys there)."""
    import yaml

    shutil.copytree(root, dest)
    code = ("import json, sys; from competition import configs; "
            "m = configs.CompetitionConfig; "
            "print(json.dumps({'top': sorted(m.model_fields), "
            "'rules': sorted(configs.RulesConfig.model_fields)}))")
    known = json.loads(subprocess.run([sys.executable, "-c", code], env=env_for(head_tree),
                                      cwd=tempfile.gettempdir(), capture_output=True,
                                      text=True, check=True).stdout)
    config = yaml.safe_load((dest / "competition.yaml").read_text())
    config = {k: v for k, v in config.items() if k in known["top"]}
    config["rules"] = {k: v for k, v in config.get("rules", {}).items() if k in known["rules"]}
    (dest / "competition.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return dest


def env_for(tree: Path | None) -> dict[str, str]:
    env = dict(os.environ, COMPETITION_TRACKING="off")
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    return env


def export_head(revision: str, into: Path) -> Path | None:
    """`competition/` of a git revision, or None where there is no git or no such revision."""
    try:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "competition"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return into


def run_worker(mode: str, cases: list[tuple[Path, Path]], repeat: int,
               tree: Path | None) -> dict[str, list[float]]:
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import bench_scoring; "
            "bench_scoring.worker(sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]))")
    args = [sys.executable, "-c", code, str(REPO / "benchmarks"), mode,
            json.dumps([[str(r), str(p)] for r, p in cases]), str(repeat)]
    # Not from the repository folder: `-c` puts the working folder first on sys.path, which
    # would shadow the exported revision.
    proc = subprocess.run(args, env=env_for(tree), capture_output=True, text=True,
                          cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        raise SystemExit(f"{mode} worker failed:\n{proc.stderr[-3000:]}")
    result: dict[str, list[float]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--head", default="HEAD", help="git revision for 'head' ('' skips)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    try:
        run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, tmp: Path) -> None:
    from competition.board.prepared import PreparedCompetition
    from competition.tasks.preparing import prepare

    competitions = [prepare(kind, tmp / kind, seed=0) for kind in DEMOS]
    for kind, source in REAL.items():
        if (args.data / source).exists():
            print(f"preparing {kind} from {args.data / source} ...", flush=True)
            competitions.append(prepare(kind, tmp / kind, source=args.data / source, seed=0))
    cases = []
    for root in competitions:
        comp = PreparedCompetition.open(root)
        path = tmp / f"{root.name}-day-one{comp.task.submission_suffix}"
        path.write_bytes(comp.task.naive_submission(comp.public_dir))
        cases.append((root, path))

    modes: dict[str, tuple[list[tuple[Path, Path]], Path | None]] = {
        "before": (cases, None), "after": (cases, None)}
    if args.head:
        (tmp / "head").mkdir()
        head_tree = export_head(args.head, tmp / "head")
        if head_tree is not None:
            head_cases = [(old_config_copy(root, tmp / "head-comps" / root.name, head_tree), p)
                          for root, p in cases]
            modes["head"] = (head_cases, head_tree)

    times: dict[str, dict[str, list[float]]] = {mode: {} for mode in modes}
    for round_ in range(args.rounds):
        order = list(modes) if round_ % 2 == 0 else list(reversed(modes))
        for mode in order:
            mode_cases, tree = modes[mode]
            for name, seconds in run_worker(mode, mode_cases, args.repeat, tree).items():
                times[mode].setdefault(name, []).extend(seconds)

    print(f"\nseconds per scoring (median of {args.rounds} x {args.repeat}), "
          f"{os.cpu_count()} CPUs")
    header = f"{'competition':16}" + "".join(f"{m:>10}" for m in modes) + \
        f"{'after/before':>14}" + (f"{'after/head':>12}" if "head" in modes else "")
    print(header)
    ratios = []
    for root, _ in cases:
        name = root.name
        med = {m: statistics.median(times[m][name]) for m in modes}
        ratio = med["after"] / med["before"]
        ratios.append(ratio)
        line = f"{name:16}" + "".join(f"{med[m]:10.3f}" for m in modes) + f"{ratio:14.3f}"
        if "head" in modes:
            line += f"{med['after'] / med['head']:12.3f}"
        print(line)
    total = {m: sum(statistics.median(times[m][r.name]) for r, _ in cases) for m in modes}
    print("scorings per minute, all competitions in turn: " +
          ", ".join(f"{m} {60 * len(cases) / total[m]:.1f}" for m in modes))
    worst = max(ratios)
    print(f"after/before: worst {worst:.3f}, all together {total['after'] / total['before']:.3f}"
          f" (target <= 1.10: {'met' if total['after'] / total['before'] <= 1.10 else 'NOT met'})")


if __name__ == "__main__":
    main()
