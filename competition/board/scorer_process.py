"""Scoring a stored file in a child process: a crash or kill of the scorer cannot take the store
down, and is recorded as a failure.

The child loads the competition's `Scorer` (task, solution, reference, the solution's hash)
once and sends back a plain payload, never an exception object.

Before it loads anything the child bounds itself with the competition's scoring limits
(`RulesConfig.scoring_memory_mb`/`scoring_cpu_seconds`, raised by a task that needs more; see
`competition.rlimits`). A file that makes the scorer pass one is `invalid` with a message that
names the limit (the participant's file did it; it is never retried automatically): a
MemoryError is reported by the child itself, a CPU-time kill (SIGXCPU) is recognised by the
parent, which knows the limits it set. Any other death stays `failed` and retryable.

The child is a multiprocessing child (forked, or from a fork server that has the task's
modules loaded already), started by `start_child` also from a daemonic process: `dask worker`
runs its workers as daemons by default, and `Process.start` refuses children there. A fresh
interpreter per scoring (a small scorer command under prlimit-style limits) would need no
such step, but it imports numpy, scipy and the task again for every file. Measured on the
demos' day-one files (2 busy CPUs, medians): a fork 0.05 s per small file, a fork server's
child 0.25 s, a fresh interpreter 1.56 s (26 scorings a minute against 86 forked).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from competition import rlimits
from competition.board.prepared import PreparedCompetition
from competition.board.scoring import Scorer
from competition.board.status import Status
from competition.errors import MAX_ERROR_CHARS, SubmissionError, clipped
from competition.formats.jsonsafe import finite, jsonable


@dataclass
class ScoredFile:
    status: Status  # scored, invalid or failed
    public: float | None = None
    private: float | None = None
    error: str | None = None
    items: list[tuple[str, str | None, list[float]]] = field(default_factory=list)
    score: float | None = None  # the whole hidden split's
    details: dict[str, Any] = field(default_factory=dict)  # for tracking: "public", "all"
    rows: list[dict[str, Any]] = field(default_factory=list)  # per item, for tracking
    item_kind: str = "item"  # what a row is (the task's item kind)
    scorer_version: str | None = None
    solution_sha256: str | None = None
    # Code submissions (issue 32): whether it counts toward the daily limit where that is
    # not simply "scored" (a failure of the participant's entry counts), and the entry's run.
    counted: bool | None = None
    run: dict[str, Any] | None = None

    def tracking_payload(self) -> dict[str, Any]:
        """What logging this result needs beyond the store's row (the whole hidden split's
        score, details, item rows): kept with the result, so that logging owed later never
        scores the file again."""
        return {"score": self.score, "details": self.details, "rows": self.rows,
                "item_kind": self.item_kind}


def score_file(root: str, path: str, file_name: str, details: bool) -> dict[str, Any]:
    """Score one stored file of the competition at `root`: a plain payload for ScoredFile.
    With `details`, also the detail metrics of the public split and of the whole hidden
    split, and the item rows (what tracking logs), all from the one pass that gave the score
    (a task that keeps no per-item state for its splits has the public split scored again)."""
    comp = PreparedCompetition.open(root)
    scorer = Scorer.load(comp)
    identity = {"scorer_version": scorer.version, "solution_sha256": scorer.solution_sha256}
    submission = comp.submission(Path(path), file_name)
    try:
        result = scorer.score(submission)
    except SubmissionError as e:
        return {"status": Status.INVALID, "error": str(e), **identity}
    task = scorer.task
    payload: dict[str, Any] = {
        "status": Status.SCORED, "public": finite(result.public),
        "private": finite(result.private), "score": finite(result.score),
        "items": [(str(result.item_id(it)), it.get("usage"), task.item_values(it))
                  for it in result.items],
        "item_kind": result.item_kind, **identity}
    if details:
        payload["details"] = {"all": jsonable(result.fields)}
        if result.public is not None:
            public = result.of_usage("Public") or scorer.score(submission, only="Public")
            payload["details"]["public"] = jsonable(public.fields)
        payload["rows"] = jsonable(result.items)
    return payload


def child_main(send: Connection, root: str, path: str, file_name: str, details: bool) -> None:
    """The scorer child: score and send a payload; a scorer bug is `failed`, retryable; a
    scoring limit reached is `invalid`, naming the limit. An error's text is clipped to
    MAX_ERROR_CHARS for the participant, and logged whole (this child's stderr is the
    worker's log)."""
    try:
        payload = score_file(root, path, file_name, details)
    except (MemoryError, rlimits.CpuLimitExceeded) as e:
        payload = limit_payload(e)
    except Exception as e:  # a scorer bug: recorded, retryable, never a lost submission
        payload = {"status": Status.FAILED, "error": f"scorer error: {type(e).__name__}: {e}"}
    error = payload.get("error")
    if isinstance(error, str) and len(error) > MAX_ERROR_CHARS:
        logging.getLogger(__name__).warning("scoring %s: %s error of %d characters, cut for "
                                            "the participant: %s", file_name,
                                            payload["status"], len(error), error)
        payload["error"] = clipped(error)
    send.send(payload)
    send.close()


def limit_payload(e: BaseException) -> dict[str, Any]:
    """What a MemoryError or a worker's CPU-time breach becomes: `invalid` naming the limit
    where one was set, else (an unbounded scorer out of memory) `failed`, as any crash."""
    limits = rlimits.active()
    if limits is None:
        return {"status": Status.FAILED, "error": f"scorer error: {type(e).__name__}: {e}"}
    if isinstance(e, MemoryError):
        rlimits.release_reserve()  # room to build and send this report
        return {"status": Status.INVALID, "error": limits.memory_message()}
    return {"status": Status.INVALID, "error": limits.cpu_message()}


def bounded_child(limits: rlimits.ScoringLimits | None, target: Callable[..., None],
                  *args: Any) -> None:
    """The child process's entry: tied to its parent's life (a killed worker, or a killed
    CLI, takes its scoring child with it: a fork server's children are tied to the fork
    server, which ends with the process that started it), its limits, then `target`
    (child_main or a test's)."""
    _leave_fork_server()
    rlimits.die_with_parent()
    if limits is not None:
        rlimits.apply(limits)
    target(*args)


def _leave_fork_server() -> None:
    """Drop this child's copy of its fork server's "alive" pipe. A fork server serves until
    every process holding that pipe has gone, and hands a copy to each child it starts (so
    that it may start processes through it too; a scoring child never does): kept, a scoring
    child would keep its fork server, and so itself, alive after the worker that started
    both was killed."""
    from multiprocessing import forkserver

    server: Any = getattr(forkserver, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)
        server._forkserver_alive_fd = None


def start_child(child: Any) -> None:
    """Start a scoring child as `multiprocessing.Process.start` does, but also from a daemonic
    process (`dask worker` runs its workers as daemons under a nanny by default), where
    `start` refuses. The refusal keeps a daemon, which is ended with its parent, from
    orphaning its children; a scoring child cannot be orphaned: it dies with its parent
    (`bounded_child`), and its fork server with the worker. The child is not registered as
    one of this process's children: `score` joins it itself."""
    child._popen = child._Popen(child)


def scoring_limits(comp: PreparedCompetition) -> rlimits.ScoringLimits:
    """The competition's scoring limits, or the task's where it declares larger ones."""
    rules, task = comp.rules, comp.task
    return rlimits.ScoringLimits(
        memory_mb=max(rules.scoring_memory_mb, task.scoring_memory_mb or 0),
        cpu_seconds=max(rules.scoring_cpu_seconds, task.scoring_cpu_seconds or 0))


class ChildScorer:
    """Scores in a child process started with `start_method`: "fork" (fast; for
    single-threaded callers like the CLI) or "forkserver" (for threaded servers, where a plain
    fork could copy a lock held by another thread into the child), from any process, a
    daemonic Dask worker's too. `bounded=False` scores without the scoring limits (benchmarks
    compare the two)."""

    target: Callable[..., None] = staticmethod(child_main)

    def __init__(self, start_method: str = "fork", bounded: bool = True):
        self.start_method = start_method
        self.bounded = bounded

    def score(self, comp: PreparedCompetition, path: Path, file_name: str, *, details: bool,
              started: Callable[[int], None] | None = None) -> ScoredFile:
        """`started(pid)` is called with the child's pid once it runs (to record it)."""
        ctx: Any = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver":
            # The task's own module too: `competition.tasks` loads tasks lazily, and every
            # child would otherwise import the task (and numpy, scipy...) afresh.
            ctx.set_forkserver_preload(["competition.board.scorer_process",
                                        type(comp.task).__module__])
        receive, send = ctx.Pipe(duplex=False)
        limits = scoring_limits(comp) if self.bounded else None
        # Not a daemon, even in a daemonic worker (it would inherit the flag): the EM scorer
        # spreads slices over processes of its own.
        child = ctx.Process(target=bounded_child, daemon=False,
                            args=(limits, type(self).target, send, str(comp.root), str(path),
                                  file_name, details))
        start_child(child)
        send.close()
        if started is not None and child.pid is not None:
            started(child.pid)
        try:
            payload = receive.recv()
        except EOFError:
            payload = None
        child.join()
        if payload is None:
            code = child.exitcode
            if limits is not None and code == -signal.SIGXCPU:
                # Only the CPU-time limit sends SIGXCPU: the file made the scorer run too long.
                return ScoredFile(Status.INVALID, error=limits.cpu_message())
            how = (f"killed by signal {-code}" if code is not None and code < 0
                   else f"exit code {code}")
            return ScoredFile(Status.FAILED, error=f"the scorer stopped before finishing "
                                                   f"({how}); the submission can be retried")
        return ScoredFile(**payload)
