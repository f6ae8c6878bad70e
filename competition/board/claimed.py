"""A claimed scoring job run to its end: the stored file scored in a limited child, the result
recorded only while the claim holds, then logged to MLflow. The one job every door uses: a
worker runs it for a dispatcher (competition.jobs.job), the command line for its own
submission (`score_own`).

It lives on the board's floor rather than in competition.jobs because Submissions runs it
for the command line's doors, and the board imports nothing from the job runner.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from competition.board.context import BoardContext
from competition.board.queue import Claim, Queue, finish_claim, holder_name, still_claimed
from competition.board.scorer_process import ScoredFile
from competition.board.status import WAITING
from competition.board.store import db
from competition.board.store.db import Connection

log = logging.getLogger(__name__)


class Submissions(Protocol):
    """What a job needs of the board's submissions (competition.board.submissions, which
    imports this module: named here by its shape, not imported)."""

    ctx: BoardContext

    def get(self, submission_id: int) -> dict[str, Any] | None: ...

    def score_stored(self, path: Path, file_name: str,
                     started: Callable[[int], None] | None = None,
                     submission_id: int | None = None) -> ScoredFile: ...

    def record(self, conn: Connection, submission_id: int, result: ScoredFile,
               reason: str) -> int: ...

    def after_record(self, row: dict[str, Any], team: str, result: ScoredFile,
                     event: int | None = None) -> None: ...

    def track_pending(self, submission_id: int) -> bool: ...


def run_claimed(subs: Submissions, claim: Claim,
                started: Callable[[int], None] | None = None) -> str:
    """Score and record one claimed submission; returns "recorded" or "lost" (the claim was
    taken over: another run records it). `started(pid)` once the scoring child runs."""
    with db.read(subs.ctx.engine) as conn:
        if not still_claimed(conn, claim):
            # Recorded already: by another run, or by this job before its worker died, in
            # which case its MLflow logging may still be owed.
            subs.track_pending(claim.submission_id)
            return "lost"
    result = subs.score_stored(subs.ctx.comp.root / claim.file_path, claim.file_name,
                               started=started, submission_id=claim.submission_id)
    return record_claimed(subs, claim, result)


def record_claimed(subs: Submissions, claim: Claim, result: ScoredFile) -> str:
    """Write `result` if `claim` still holds, then log it (after the commit, as always)."""
    with db.write(subs.ctx.engine) as conn:
        if not finish_claim(conn, claim, result):
            log.info("submission %d: claim lost, result dropped", claim.submission_id)
            return "lost"
        event = subs.record(conn, claim.submission_id, result, reason="submit")
    row = subs.get(claim.submission_id)
    assert row is not None
    subs.after_record(row, row["team"], result, event)
    return "recorded"


def score_own(subs: Submissions, submission_id: int, poll_seconds: float = 0.25) -> None:
    """Score a queued submission in this process (a command without a server): claim it,
    run the job while a thread renews the lease (a long scoring is not taken back), and
    return once its result is recorded. Where another holder has it (a serve process on the
    same store claimed it first), wait for that holder's result, or for its lease to run out
    and claim it then."""
    queue = Queue(subs.ctx, holder_name())
    while True:
        claim = queue.claim_one(submission_id)
        if claim is not None:
            with _renewing(queue, claim) as start_renewing:
                if run_claimed(subs, claim, started=lambda _pid: start_renewing()) \
                        == "recorded":
                    return
        row = subs.get(submission_id)
        if row is None or row["status"] not in WAITING:
            return
        time.sleep(poll_seconds)


@contextlib.contextmanager
def _renewing(queue: Queue, claim: Claim) -> Iterator[Callable[[], None]]:
    """Yields a function that starts renewing `claim`'s lease from a thread, every third of
    the lease, until the block ends or the claim is lost. Started once the scoring child
    runs, not before: a forked child must not copy a lock held by a running thread."""
    stop = threading.Event()
    thread = threading.Thread(target=_renew_until, args=(queue, claim, stop),
                              name=f"lease-{claim.submission_id}", daemon=True)

    def start() -> None:  # once: a code submission's run and then its scoring both call it
        if thread.ident is None:
            thread.start()

    try:
        yield start
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()


def _renew_until(queue: Queue, claim: Claim, stop: threading.Event) -> None:
    every = queue.lease.total_seconds() / 3
    while not stop.wait(every):
        try:
            if queue.renew([claim]):
                log.warning("submission %d: lease lost; its new holder records it",
                            claim.submission_id)
                return
        except Exception:  # a database hiccup: the next renewal may pass
            log.exception("submission %d: renewing the lease failed", claim.submission_id)
