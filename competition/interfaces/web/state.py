"""The portal's state: one competition and its board, re-read when competition.yaml changes,
the scoring jobs it queues, its public files, and what of its board a viewer may see. What
lasts across reloads (failed sign-ins, uploads being received, the jobs' dispatcher) is kept
here too."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from competition.board import leaderboard
from competition.board.board import Board
from competition.board.late import late_board
from competition.board.prepared import PreparedCompetition
from competition.board.scorer_process import ChildScorer
from competition.board.sessions import DEFAULT_TTL, Sessions
from competition.board.status import WAITING
from competition.board.views import Entry, Outcome
from competition.interfaces.web.security import Site, Viewer
from competition.interfaces.web.sign_in_limits import SignInLimits
from competition.interfaces.web.upload_slots import UploadSlots
from competition.jobs.dispatcher import Dispatcher
from competition.jobs.job import DEFAULT_SCORER
from competition.jobs.runners import Runner, ThreadRunner

log = logging.getLogger(__name__)
TRUST_PROXY_ENV = "COMPETITION_TRUST_PROXY"
SESSION_HOURS_ENV = "COMPETITION_SESSION_HOURS"


@dataclass(frozen=True)
class _Loaded:
    """One reading of competition.yaml and the board built on it."""

    signature: tuple[int, int, int]
    comp: PreparedCompetition
    board: Board
    sessions: Sessions


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class Portal:
    """One competition served: its board, its public files and its description.

    competition.yaml is watched with one `stat` per request: when it changed, the competition
    and its board are opened again, so new rules (daily limit, deadline, size limit...) hold
    from the next request on. A file that no longer loads keeps the old rules (and is logged).
    """

    def __init__(self, directory: Path | str, store_url: str | None = None, *,
                 trust_proxy: bool | None = None, session_ttl: timedelta | None = None,
                 runner: Runner | None = None, scorer_spec: str = DEFAULT_SCORER,
                 slug: str | None = None, sign_ins: SignInLimits | None = None,
                 own_runner: bool = True):
        """`runner`: where scoring jobs run (default: two threads of this process, each job
        scoring in a child process; `competition serve` gives a Dask cluster). In a course
        (course.py): `slug` names the competition (its cookies carry it, and its pages link
        to the course's sign-in); `sign_ins` are the course's counts of failed sign-ins,
        shared by its competitions; with `own_runner` False the runner is shared and the
        course closes it, not this portal."""
        self.directory = Path(directory)
        self.store_url = store_url
        self.slug = slug
        self.site = Site(trust_proxy=env_flag(TRUST_PROXY_ENV) if trust_proxy is None
                         else trust_proxy, scope=slug or "")
        hours = os.environ.get(SESSION_HOURS_ENV)
        self.session_ttl = session_ttl or (timedelta(hours=float(hours)) if hours
                                           else DEFAULT_TTL)
        # Failed sign-ins, kept across reloads (a course shares one count: guessing at one
        # competition's API is guessing at all of them).
        self.sign_ins = sign_ins or SignInLimits()
        # Unknown invitation codes tried, by student (routers/team.py).
        self.code_guesses = SignInLimits()
        self.scorer = ChildScorer("forkserver")
        self._lock = threading.Lock()
        self._refused: tuple[int, int, int] | None = None
        # Called with the new board after competition.yaml was read again (for whatever holds
        # the board beside the requests, e.g. a scoring dispatcher).
        self.on_reload: list[Callable[[Board], None]] = []
        self._loaded = self._load(self._signature())
        # Scoring never happens in a request: accepted uploads are queued, and the
        # dispatcher (started with the first upload, or by the app's startup) runs them.
        self.runner = runner or ThreadRunner(2)
        self.own_runner = own_runner
        self.dispatcher = Dispatcher(self.board, self.runner, store_url, scorer_spec)
        self.on_reload.append(self.dispatcher.rebind)
        # Uploads being received: slots and temporary space (kept across reloads).
        self.uploads = UploadSlots()

    # --- the competition, re-read when its configuration changes ---------------------------

    @property
    def config_path(self) -> Path:
        return self.directory / "competition.yaml"

    def _signature(self) -> tuple[int, int, int]:
        stat = self.config_path.stat()
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def _load(self, signature: tuple[int, int, int]) -> _Loaded:
        comp = PreparedCompetition.open(self.directory)
        board = Board(comp, url=self.store_url, scorer=self.scorer)
        return _Loaded(signature, comp, board, Sessions(board.ctx, board.teams))

    def stale(self) -> bool:
        """Whether competition.yaml changed since it was read (one stat)."""
        try:
            signature = self._signature()
        except OSError:
            return False  # being replaced right now: keep the rules in force
        return signature != self._loaded.signature and signature != self._refused

    def reload(self) -> None:
        with self._lock:
            signature = None
            try:
                signature = self._signature()
                if signature in (self._loaded.signature, self._refused):
                    return
                old, self._loaded = self._loaded, self._load(signature)
                self._refused = None
            except Exception as e:  # whatever the new file breaks, the portal keeps serving
                self._refused = signature
                log.error("competition.yaml changed but cannot be used (the earlier rules "
                          "stay in force): %s", e)
                return
        log.info("competition.yaml changed: the new rules are in force")
        # Requests under way keep their connections; the old pool is closed as they return.
        old.board.engine.dispose()
        for listener in self.on_reload:
            listener(self.board)

    @property
    def comp(self) -> PreparedCompetition:
        return self._loaded.comp

    @property
    def board(self) -> Board:
        return self._loaded.board

    @property
    def sessions(self) -> Sessions:
        return self._loaded.sessions

    @property
    def public_root(self) -> Path:
        return self.comp.public_dir.resolve()

    # --- scoring jobs ----------------------------------------------------------------------

    def start_jobs(self) -> None:
        with self._lock:
            if not self.dispatcher.started:
                self.dispatcher.start()

    def stop_jobs(self) -> None:
        self.dispatcher.stop()
        if self.own_runner:
            self.runner.close()

    @property
    def in_course(self) -> bool:
        return self.slug is not None

    def queued(self) -> None:
        """An upload was queued: make sure jobs run, and look now."""
        self.start_jobs()
        self.dispatcher.wake()

    async def outcome_within(self, submission_id: int, team: str, seconds: float) -> Outcome:
        """The submission's outcome once it is final, or as it stands after `seconds`
        (polled in the store: no thread waits on the scoring)."""
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            found = await run_in_threadpool(self.board.submissions.outcome_of, submission_id,
                                            team)
            if found.status not in WAITING or asyncio.get_running_loop().time() >= deadline:
                return found
            await asyncio.sleep(0.2)

    # --- public files ----------------------------------------------------------------------

    def public_files(self) -> list[str]:
        root = self.public_root
        return sorted(p.relative_to(root).as_posix()
                      for p in root.rglob("*") if p.is_file() and not p.is_symlink())

    def public_path(self, path: str) -> Path | None:
        """`path` resolved inside public/, or None (outside it, too long, not a name)."""
        if "\x00" in path or len(path) > 1000 or \
                any(len(part.encode()) > 255 for part in path.split("/")):
            return None
        root = self.public_root
        try:
            target = (root / path).resolve()
        except (OSError, ValueError):
            return None
        return target if target.is_relative_to(root) else None

    def public_file(self, path: str) -> Path | None:
        """A file under public/, or None (nothing outside it, no links)."""
        target = self.public_path(path)
        try:
            return target if target is not None and target.is_file() else None
        except OSError:
            return None

    # --- what a viewer may see of the board ------------------------------------------------

    def board_entries(self, *, private: bool) -> list[Entry]:
        return leaderboard.private_board(self.board) if private else \
            leaderboard.public_board(self.board)

    def late_json(self, viewer: Viewer | None) -> list[dict[str, Any]]:
        """The late board as `viewer` may see it (the private scores after the deadline, or
        to the organizer)."""
        show = self.may_see_private(viewer)
        return [e.as_json(show) for e in late_board(self.board)]

    def may_see_private(self, viewer: Viewer | None) -> bool:
        return self.board.private_visible or (viewer is not None and viewer.role == "organizer")

    def outcome_json(self, outcome: Outcome, viewer: Viewer | None) -> dict[str, Any]:
        return outcome.as_json(show_private=self.may_see_private(viewer))
