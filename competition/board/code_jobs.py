"""A code submission's job (issue 32): the stored zip unpacked safely, the participant's
entry run in the sandbox on the hidden test inputs (competition.sandbox), and the file it
wrote scored through the normal path.

Who is at fault decides what counts: the entry's own failures (a limit passed, an error
exit, no output file, an invalid one, a zip that cannot be run) end `failed` and count toward
the daily limit, with the cause and the end of its output for the team; the harness's (no
sandbox here, a scorer that died) end `failed`, uncounted and retryable, as for files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from competition.board.prepared import PreparedCompetition
from competition.board.scorer_process import ScoredFile
from competition.board.status import Status
from competition.errors import CompetitionError, ConfigError, SubmissionError

log = logging.getLogger(__name__)

# Stored code submissions end with this (content-addressed like every stored file), so a job
# knows a zip to run from a prediction file (an MRI submission is a zip too).
CODE_SUFFIX = ".entry.zip"
RUNS_DIR = "code_runs"  # under the competition's root: each run's output folder
MAX_MEMBERS = 2000  # files in an entry's zip
MIB = 1024 * 1024


def is_code_file(path: Path | str) -> bool:
    return str(path).endswith(CODE_SUFFIX)


def run_and_score(comp: PreparedCompetition, zip_path: Path, key: str,
                  score: Callable[[Path, str], ScoredFile],
                  started: Callable[[int], None] | None = None) -> ScoredFile:
    """Run the entry in `zip_path` (its run's folder: RUNS_DIR/`key`) and score what it
    wrote with `score(path, file_name)`."""
    from competition.entries import check_supports
    from competition.sandbox.entry_run import run_entry
    from competition.sandbox.limits import CodeLimits
    from competition.sandbox.unpack import unpack_entry

    work = comp.root / RUNS_DIR / key
    shutil.rmtree(work, ignore_errors=True)  # a run again (a retry) starts afresh
    (work / "out").mkdir(parents=True)
    (work / "entry").mkdir()
    settings = comp.config.code
    limits = CodeLimits(**settings.model_dump(exclude={"sandbox"}))
    try:
        try:  # unpacked, it may take what its run may write
            entry = unpack_entry(zip_path, work / "entry", max_bytes=limits.disk_mb * MIB,
                                 max_members=MAX_MEMBERS)
            check_supports(entry, comp.task.name)
        except (SubmissionError, ConfigError, CompetitionError) as e:
            return participants(f"the zip cannot be run: {e}")
        hidden = {rel: path for rel, path in comp.test_inputs().items()
                  if not path.is_relative_to(comp.public_dir)}
        written: Path | None = None
        if settings.sandbox == "none":  # loud each time: the organizer's trust, not a default
            log.warning("code submission %s runs WITHOUT a sandbox (code.sandbox: none in "
                        "competition.yaml): network and files are not fenced off", key)
        try:
            result, written = run_entry(entry, comp.task.name, comp.public_dir, hidden,
                                        work / "out", limits, sandbox=settings.sandbox,
                                        started=started)
        except CompetitionError as e:  # no sandbox here: the harness's, not the team's
            log.error("code submission %s not run: %s", key, e)
            return ScoredFile(Status.FAILED, error=f"the entry could not be run here ({e}); "
                              "the organizers have been told, and it can be retried")
        finally:
            keep_only(work / "out", written)
        run: dict[str, Any] = {
            "wall_seconds": round(result.wall_seconds, 3),
            "cpu_seconds": round(result.cpu_seconds, 3),
            "peak_memory_mb": round(result.peak_memory_mb, 1),
            "exit_code": result.exit_code, "cause": result.cause,
            "stdout_tail": result.stdout_tail, "stderr_tail": result.stderr_tail,
            "output_path": written.relative_to(comp.root).as_posix() if written else None}
        if not result.ok:
            return participants(f"{result.cause}: {result.message}", run)
        if written is None:
            return participants("no output file: the entry ended without writing a "
                                "submission (see the end of its output)",
                                {**run, "cause": "no output file"})
        scored = score(written, written.name)
        if scored.status == Status.INVALID:
            return participants(f"invalid output: {scored.error}",
                                {**run, "cause": "invalid output"})
        return dataclasses.replace(scored, run=run)
    finally:
        shutil.rmtree(work / "entry", ignore_errors=True)


def keep_only(out_dir: Path, written: Path | None) -> None:
    """Remove from a run's output folder everything but the submission file it wrote: the
    folder is kept (rescoring reads that file), and an entry must not leave up to its disk
    limit (or the overshoot of a write faster than the watchdog's poll) on the host for
    good, submission after submission. Symlinks are removed, never followed."""
    with contextlib.suppress(FileNotFoundError), os.scandir(out_dir) as entries:
        for entry in list(entries):
            path = Path(entry.path)
            if written is not None and path == written:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.unlink()


def participants(error: str, run: dict[str, Any] | None = None) -> ScoredFile:
    """A failure of the participant's own making: it counts toward the daily limit."""
    return ScoredFile(Status.FAILED, error=error, counted=True, run=run)


def output_of(comp: PreparedCompetition, run: dict[str, Any] | None) -> Path | None:
    """The file a code submission's run wrote (what rescoring scores again), if kept."""
    rel = (run or {}).get("output_path")
    path = comp.root / rel if rel else None
    return path if path is not None and path.is_file() else None
