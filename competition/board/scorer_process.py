"""Scoring a stored file in a child process: a crash or kill of the scorer cannot take the store
down, and is recorded as a failure.

The child loads the competition's `Scorer` (task, solution, reference, the solution's hash)
once and sends back a plain payload, never an exception object.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from competition.board.prepared import PreparedCompetition
from competition.board.scoring import Scorer
from competition.board.status import Status
from competition.errors import SubmissionError
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


def score_file(root: str, path: str, file_name: str, details: bool) -> dict[str, Any]:
    """Score one stored file of the competition at `root`: a plain payload for ScoredFile.
    With `details`, also the detail metrics of the public split and of the whole hidden
    split, and the item rows (what tracking logs)."""
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
            payload["details"]["public"] = jsonable(scorer.score(submission,
                                                                 only="Public").fields)
        payload["rows"] = jsonable(result.items)
    return payload


def child_main(send: Connection, root: str, path: str, file_name: str, details: bool) -> None:
    """The scorer child: score and send a payload; a scorer bug is `failed`, retryable."""
    try:
        payload = score_file(root, path, file_name, details)
    except Exception as e:  # a scorer bug: recorded, retryable, never a lost submission
        payload = {"status": Status.FAILED, "error": f"scorer error: {type(e).__name__}: {e}"}
    send.send(payload)
    send.close()


class ChildScorer:
    """Scores in a child process started with `start_method`: "fork" (fast; for
    single-threaded callers like the CLI) or "forkserver" (for threaded servers, where a plain
    fork could copy a lock held by another thread into the child)."""

    target: Callable[..., None] = staticmethod(child_main)

    def __init__(self, start_method: str = "fork"):
        self.start_method = start_method

    def score(self, comp: PreparedCompetition, path: Path, file_name: str, details: bool,
              started: Callable[[int], None] | None = None) -> ScoredFile:
        """`started(pid)` is called with the child's pid once it runs (to record it)."""
        ctx: Any = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver":
            # The task's own module too: `competition.tasks` loads tasks lazily, and every
            # child would otherwise import the task (and numpy, scipy...) afresh.
            ctx.set_forkserver_preload(["competition.board.scorer_process",
                                        type(comp.task).__module__])
        receive, send = ctx.Pipe(duplex=False)
        # Not a daemon: the EM scorer spreads slices over processes of its own.
        child = ctx.Process(target=type(self).target,
                            args=(send, str(comp.root), str(path), file_name, details))
        child.start()
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
            how = (f"killed by signal {-code}" if code is not None and code < 0
                   else f"exit code {code}")
            return ScoredFile(Status.FAILED, error=f"the scorer stopped before finishing "
                                                   f"({how}); the submission can be retried")
        return ScoredFile(**payload)
