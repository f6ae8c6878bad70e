"""What the sandbox of a code submission costs (issue 32): the same entry run on the same
competition by `run_entry` in bubblewrap and as a plain process under the same limits
(`sandbox: none`), alternating, in the same run; the ratio of the medians is the sandbox's
overhead (target: at most 1.2x for the threshold entry on the nuclei demo). Then how long the
sandbox takes to stop hostile entries, each against its limit.

    python benchmarks/bench_code.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from competition.board.prepared import PreparedCompetition  # noqa: E402
from competition.sandbox.bwrap import unavailable_reason  # noqa: E402
from competition.sandbox.entry_run import run_entry  # noqa: E402
from competition.sandbox.limits import CodeLimits  # noqa: E402
from competition.tasks.preparing import prepare  # noqa: E402

HOSTILE = {
    "sleep for ever (wall 5 s)": ("import time\ntime.sleep(10**6)\n", {"wall_seconds": 5}),
    "spin (CPU 5 s)": ("while True:\n    pass\n", {"cpu_seconds": 5}),
    "allocate 20 GB (memory 512 MB)": ("b = bytearray(20 * 2**30)\n", {"memory_mb": 512}),
    "fork bomb (64 processes)": ("import os\nwhile True:\n    os.fork()\n", {}),
    "print 1 GB (log 256 KB)": ("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
                                {}),
}


def threshold_entry(folder: Path) -> Path:
    """The shipped threshold entry with its smoke settings as its config.yaml."""
    shutil.copytree(REPO / "submissions" / "threshold", folder)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    for key, value in yaml.safe_load((folder / "smoke.yaml").read_text()).items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def one_run(comp: PreparedCompetition, entry: Path, work: Path, limits: CodeLimits,
            sandbox: str) -> tuple[float, str | None]:
    out = work / f"out-{time.monotonic_ns()}"
    out.mkdir()
    hidden = {rel: path for rel, path in comp.test_inputs().items()
              if not path.is_relative_to(comp.public_dir)}
    start = time.perf_counter()
    result, _ = run_entry(entry, comp.task.name, comp.public_dir, hidden, out, limits,
                          sandbox=sandbox)  # type: ignore[arg-type]
    return time.perf_counter() - start, result.cause


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason is not None:
        sys.exit(f"bubblewrap cannot run here: {reason}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        comp = PreparedCompetition.open(prepare("demo-nuclei", work / "nuclei",
                                                submission="code"))
        entry = threshold_entry(work / "threshold")
        limits = CodeLimits()
        times: dict[str, list[float]] = {"bwrap": [], "none": []}
        for _ in range(args.repeat):
            for sandbox in times:
                seconds, cause = one_run(comp, entry, work, limits, sandbox)
                assert cause is None, cause
                times[sandbox].append(seconds)
        boxed, plain = (statistics.median(times[k]) for k in ("bwrap", "none"))
        print(f"threshold entry on demo-nuclei (fit + predict), median of {args.repeat}: "
              f"sandboxed {boxed:.2f} s, plain process {plain:.2f} s: {boxed / plain:.2f}x "
              "(target: at most 1.2x)")
        for name, (code, settings) in HOSTILE.items():
            folder = work / f"hostile-{len(name)}"
            folder.mkdir()
            (folder / "entry.py").write_text(code)
            (folder / "config.yaml").write_text("tasks: [nuclei]\nseed: 0\n")
            bounded = CodeLimits(**{**CodeLimits().__dict__, **settings})
            seconds, cause = one_run(comp, folder, work, bounded, "bwrap")
            print(f"{name}: stopped after {seconds:.1f} s ({cause})")


if __name__ == "__main__":
    main()
