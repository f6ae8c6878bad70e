"""The dispatcher: a thread of a serve process that keeps the runner busy with the queue's
jobs, renews their leases while they run, and records a job that could not finish (its
worker died too often, or it raised) as `failed` with the reason, under its claim.

Several dispatchers (serve processes, `competition jobs`, on one host or several) may share
one store: the queue's claims keep each job with one of them, and a dispatcher (or a command
scoring its own submission) that dies leaves claims that the others take back when their
leases run out. Nothing looks at PIDs: a restarted serve process, too, waits for the leases
its predecessor left. `drain` runs the loop in the caller's thread until no job is left to
claim (`competition jobs`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from competition.board.board import Board
from competition.board.queue import Claim, Queue, holder_name
from competition.board.scorer_process import ScoredFile
from competition.board.status import Status
from competition.jobs.job import DEFAULT_SCORER, record, run_job, track_job
from competition.jobs.runners import Runner, RunnerShare

log = logging.getLogger(__name__)


@dataclass
class Running:
    claim: Claim
    future: Any


class Dispatcher:
    def __init__(self, board: Board, runner: Runner, store_url: str | None = None,
                 scorer_spec: str = DEFAULT_SCORER, poll_seconds: float = 0.5,
                 lease_seconds: float | None = None):
        """`lease_seconds`: None for COMPETITION_LEASE_SECONDS, else 60 s (board.queue)."""
        self.board, self.runner, self.store_url = board, runner, store_url
        self.scorer_spec, self.poll = scorer_spec, poll_seconds
        self.queue = Queue(board.ctx, holder_name(), lease_seconds)
        self.lease_seconds = self.queue.lease.total_seconds()
        self.handed_out = 0  # jobs started by this dispatcher
        self._last_renewal = time.monotonic()
        self.running: dict[int, Running] = {}
        self.tracking: dict[int, Any] = {}  # owed MLflow logging, being done
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="dispatcher", daemon=True)
        self._thread.start()

    def rebind(self, board: Board) -> None:
        """Claim and record through `board` from now on (competition.yaml was read again)."""
        self.board = board
        self.queue = Queue(board.ctx, self.queue.holder, self.lease_seconds)

    @property
    def started(self) -> bool:
        return self._thread is not None

    def wake(self) -> None:
        """A job was queued: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 10) -> None:
        """Stop claiming; jobs already handed out finish (or their leases run out)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # --- the loop ----------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._step()
            self._wake.wait(self.poll)
            self._wake.clear()

    def drain(self, *, watch: bool = False) -> None:
        """Run the loop in this thread until no job is left to claim and those handed out
        (and the MLflow logging owed) have ended; with `watch`, until `stop`. Jobs held
        under a lease that still runs are left to their holders."""
        self._sweep_tracking()
        while not self._stop.is_set():
            claimed = self._step()
            if not watch and not claimed and not self.running and all(
                    future.done() for future in self.tracking.values()):
                return
            self._wake.wait(self.poll)
            self._wake.clear()

    def _step(self) -> int:
        """One turn of the loop; returns how many jobs it claimed."""
        claimed = 0
        try:
            self._collect()
            # Claims only up to the workers there are, not ahead of them: a claimed job
            # waits in the runner's own first-in-first-out queue, where a team that
            # arrives later could no longer pass it, so claiming ahead would defeat the
            # queue's round-robin (a new team's job would wait behind every job claimed
            # before it). A worker freed is not left idle until the next poll: each
            # job's end wakes this loop (`_start`), which claims the next job at once.
            free = self.runner.capacity() - len(self.running)
            if free > 0:
                for claim in self.queue.claim(free):
                    self._start(claim)
                    claimed += 1
            if isinstance(self.runner, RunnerShare):
                # Sharing workers with other competitions: say whether jobs of this one
                # still wait, so that a busier one leaves this one its part.
                self.runner.wanting(claimed == free > 0 or
                                    (free <= 0 and self.queue.waiting()))
            if time.monotonic() - self._last_renewal > self.lease_seconds / 3:
                self._renew()
                self._sweep_tracking()
                self._last_renewal = time.monotonic()
        except Exception:  # the loop must outlive a database hiccup
            log.exception("the dispatcher's loop failed; trying again")
        return claimed

    def _start(self, claim: Claim) -> None:
        future = self.runner.submit(run_job, str(self.board.comp.root), self.store_url, claim,
                                    self.scorer_spec,
                                    key=f"score-{claim.submission_id}-{claim.token}")
        self.running[claim.submission_id] = Running(claim, future)
        self.handed_out += 1
        # Both runners' futures call back when done (Dask's from a thread of its own).
        future.add_done_callback(lambda _: self._wake.set())

    def _collect(self) -> None:
        for sid, job in list(self.running.items()):
            if not job.future.done():
                continue
            del self.running[sid]
            error = job.future.exception()
            if error is None:
                continue  # the job recorded its result (or found its claim taken over)
            reason = _failure(error)
            log.warning("submission %d: %s", sid, reason)
            record(self.board, job.claim, ScoredFile(Status.FAILED, error=reason))

    def _sweep_tracking(self) -> None:
        """Hand out the MLflow logging still owed for results recorded a while ago (a job
        that died between its commit and its logging; an unreachable tracking server)."""
        for sid, future in list(self.tracking.items()):
            if future.done():
                del self.tracking[sid]
        owed = self.queue.tracking_owed(older_than_seconds=self.lease_seconds)
        for sid in owed:
            if sid not in self.tracking and sid not in self.running:
                self.tracking[sid] = self.runner.submit(
                    track_job, str(self.board.comp.root), self.store_url, sid,
                    self.scorer_spec, key=f"track-{sid}-{time.monotonic_ns()}")

    def _renew(self) -> None:
        lost = self.queue.renew([job.claim for job in self.running.values()])
        for claim in lost:  # taken over (our lease ran out): the new holder records it
            self.running.pop(claim.submission_id, None)


def _failure(error: BaseException) -> str:
    if type(error).__name__ == "KilledWorker":
        return ("the workers scoring it died repeatedly (it may exceed a worker's memory); "
                "the submission can be retried")
    return f"the scoring job failed ({type(error).__name__}: {error}); the submission can " \
           "be retried"
