"""A test double: a scorer slow enough to be killed mid-run, and a submit command that uses it.

`SlowScorer` is a `ChildScorer` whose child sleeps `PAUSE_S` seconds before scoring as usual,
so a test can kill it, or the submitting process, mid-run (the child is the submitting
process's child: /proc lists it);
`BurnScorer`'s child burns `BURN_S` seconds of CPU first (benchmarks of CPU-bound jobs). Both
read their times from the environment (COMPETITION_TEST_SCORER_PAUSE / _BURN), so that the
servers and workers a benchmark starts use them too.

    python -m tests.slow_submit DIR FILE TEAM

submits FILE for TEAM to the competition in DIR as `competition submit` does, through the queue
(queued, claimed by this process as COMPETITION_HOST_NAME:pid under a lease of
COMPETITION_LEASE_SECONDS, scored by the queue's job; the store URL from
`COMPETITION_STORE_URL` where set), with the slow scorer: exit 0 when the submission is kept
(scored or duplicate), 2 with the error on stderr when it is invalid or failed or refused.
`competition jobs DIR --scorer tests.slow_submit:SlowScorer` scores queued jobs with it.
"""

from __future__ import annotations

import os
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

from competition.board.board import Board
from competition.board.prepared import PreparedCompetition
from competition.board.scorer_process import ChildScorer, child_main
from competition.errors import CompetitionError

PAUSE_S = float(os.environ.get("COMPETITION_TEST_SCORER_PAUSE", "60"))
# BurnScorer's child burns this much CPU time before scoring (a CPU-bound job).
BURN_S = float(os.environ.get("COMPETITION_TEST_SCORER_BURN", "1"))


def slow_child_main(send: Connection, root: str, path: str, file_name: str,
                    details: bool) -> None:
    """The scorer child, after a pause long enough to be killed in."""
    time.sleep(PAUSE_S)
    child_main(send, root, path, file_name, details)


class SlowScorer(ChildScorer):
    target = staticmethod(slow_child_main)


def burning_child_main(send: Connection, root: str, path: str, file_name: str,
                       details: bool) -> None:
    """The scorer child, after `BURN_S` seconds of CPU time spent in a busy loop."""
    end = time.process_time() + BURN_S
    while time.process_time() < end:
        pass
    child_main(send, root, path, file_name, details)


class BurnScorer(ChildScorer):
    target = staticmethod(burning_child_main)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m tests.slow_submit DIR FILE TEAM", file=sys.stderr)
        return 2
    directory, file, team = argv
    try:
        board = Board(PreparedCompetition.open(directory), scorer=SlowScorer())
        outcome = board.submissions.submit(Path(file), team)
    except CompetitionError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    if outcome.status in ("invalid", "failed"):
        print(f"{outcome.status} submission {outcome.id}: {outcome.error}", file=sys.stderr)
        return 2
    print(f"{outcome.status} submission {outcome.id}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
