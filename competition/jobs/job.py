"""One scoring job, as a worker runs it: score the stored file in a limited child process,
record the result while the claim holds, then log it to MLflow.

A job can run twice (Dask reruns a job whose worker died; a dispatcher takes back a job whose
lease ran out): only the run that still holds the claim records anything.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from competition.board import claimed
from competition.board.queue import Claim
from competition.board.scorer_process import ChildScorer, ScoredFile

log = logging.getLogger(__name__)
DEFAULT_SCORER = "competition.board.scorer_process:ChildScorer"


def load_scorer(spec: str) -> ChildScorer:
    """A scorer class by import path ("package.module:Class"), started as a fork server's
    child (a worker runs jobs in threads: a plain fork could copy a held lock)."""
    module, _, name = spec.partition(":")
    cls = getattr(importlib.import_module(module), name)
    scorer: ChildScorer = cls("forkserver")
    return scorer


def run_job(root: str, store_url: str | None, claim: Claim,
            scorer_spec: str = DEFAULT_SCORER) -> str:
    """Score and record one claimed submission; returns "recorded" or "lost" (the claim was
    taken over: another run records it). The job itself is board.claimed's, the one the
    command line runs for its own submissions too."""
    from competition.board.board import Board
    from competition.board.prepared import PreparedCompetition

    board = Board(PreparedCompetition.open(root), url=store_url,
                  scorer=load_scorer(scorer_spec))
    return claimed.run_claimed(board.submissions, claim)


def track_job(root: str, store_url: str | None, submission_id: int,
              scorer_spec: str = DEFAULT_SCORER) -> bool:
    """Log a scored submission whose logging is still owed (the dispatcher's sweep)."""
    from competition.board.board import Board
    from competition.board.prepared import PreparedCompetition

    board = Board(PreparedCompetition.open(root), url=store_url,
                  scorer=load_scorer(scorer_spec))
    return board.submissions.track_pending(submission_id)


def record(board: Any, claim: Claim, result: ScoredFile) -> str:
    """Write `result` if `claim` still holds, then log it (after the commit, as always)."""
    return claimed.record_claimed(board.submissions, claim, result)
