"""One scoring job, as a worker runs it: score the stored file in a limited child process,
record the result while the claim holds, then log it to MLflow.

A job can run twice (Dask reruns a job whose worker died; a dispatcher takes back a job whose
lease ran out): only the run that still holds the claim records anything.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from competition.board.queue import Claim, finish_claim, still_claimed
from competition.board.scorer_process import ChildScorer, ScoredFile
from competition.board.store import db

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
    taken over: another run records it)."""
    from competition.board.board import Board
    from competition.board.prepared import PreparedCompetition

    board = Board(PreparedCompetition.open(root), url=store_url,
                  scorer=load_scorer(scorer_spec))
    with db.read(board.engine) as conn:
        if not still_claimed(conn, claim):
            # Recorded already: by another run, or by this job before its worker died, in
            # which case its MLflow logging may still be owed.
            board.submissions.track_pending(claim.submission_id)
            return "lost"
    result = board.submissions.score_stored(Path(root) / claim.file_path, claim.file_name)
    return record(board, claim, result)


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
    with db.write(board.engine) as conn:
        if not finish_claim(conn, claim, result):
            log.info("submission %d: claim lost, result dropped", claim.submission_id)
            return "lost"
        event = board.submissions.record(conn, claim.submission_id, result, reason="submit")
    row = board.submissions.get(claim.submission_id)
    board.submissions.after_record(row, row["team"], result, event)
    return "recorded"
