"""A fair scoring queue (issue 33): jobs taken round-robin across teams, each team's CPU
seconds in flight capped, and a dispatcher that claims no further ahead than its workers, so
that one team's backlog delays another team's job by at most one job."""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from competition.board.board import Board
from competition.board.prepared import PreparedCompetition
from competition.board.queue import Queue, team_jobs_in_flight
from competition.board.scorer_process import ChildScorer, ScoredFile
from competition.board.status import Status
from competition.board.store.schema import submissions
from competition.jobs import job as job_module
from competition.jobs.dispatcher import Dispatcher
from competition.jobs.runners import ThreadRunner
from tests.test_jobs import demo_copy, variants

log = logging.getLogger(__name__)

JOB_S = 1.5  # how long SleepScorer's scoring takes


class SleepScorer(ChildScorer):
    """A scoring of known length: JOB_S seconds of sleep, then a fixed score (no child
    process, whose start and scoring would add a varying time to every job)."""

    def score(self, comp: PreparedCompetition, path: Path, file_name: str, *, details: bool,
              started: Any = None) -> ScoredFile:
        time.sleep(JOB_S)
        return ScoredFile(Status.SCORED, public=0.5, private=0.5, score=0.5)


def with_portal(comp: PreparedCompetition, **portal: object) -> PreparedCompetition:
    """`comp` opened again with these keys set in competition.yaml's portal section."""
    path = comp.root / "competition.yaml"
    doc = yaml.safe_load(path.read_text())
    doc.setdefault("portal", {}).update(portal)
    path.write_text(yaml.safe_dump(doc))
    return PreparedCompetition.open(comp.root)


def submit_all(board: Board, files: list[Path], team: str) -> list[int]:
    return [board.submissions.submit(path, team, queue=True).id for path in files]


def ids(claims: list) -> list[int]:
    return [claim.submission_id for claim in claims]


# --- the order of claims ---------------------------------------------------------------------

def test_a_teams_backlog_does_not_delay_another_teams_first_job(demo_dirs, tmp_path,
                                                               store_url):
    comp = demo_copy(demo_dirs, tmp_path, daily_limit=60, uploads_per_hour=60)
    board = Board(comp, url=store_url)
    files = variants(comp, tmp_path, 51)
    backlog = submit_all(board, files[:50], "alpha")
    (late,) = submit_all(board, files[50:], "beta")
    queue = Queue(board.ctx, "host:1")
    assert ids(queue.claim(1)) == [backlog[0]]
    # alpha has one job in flight, beta none: beta's job goes next although 49 of alpha's
    # are older; then alpha's next one, up to its two jobs in flight (the default cap).
    assert ids(queue.claim(5)) == [late, backlog[1]]
    assert queue.claim(5) == []


def test_teams_take_turns_oldest_team_first(demo_dirs, tmp_path, store_url):
    comp = demo_copy(demo_dirs, tmp_path, daily_limit=10, uploads_per_hour=10)
    comp = with_portal(comp, team_cpu_seconds_in_flight=10 * 120)
    board = Board(comp, url=store_url)
    files = variants(comp, tmp_path, 7)
    b = submit_all(board, files[:1], "beta")  # beta's job is the oldest of all
    a = submit_all(board, files[1:4], "alpha")
    c = submit_all(board, files[4:7], "gamma")
    assert ids(Queue(board.ctx, "host:1").claim(7)) == [
        b[0], a[0], c[0], a[1], c[1], a[2], c[2]]


# --- the cap on CPU seconds in flight ----------------------------------------------------------

def test_a_team_at_its_cap_waits_while_others_are_claimed(demo_dirs, tmp_path, store_url):
    comp = demo_copy(demo_dirs, tmp_path, daily_limit=10, uploads_per_hour=10)
    comp = with_portal(comp, team_cpu_seconds_in_flight=3 * 120 + 60)  # three 120 s jobs
    board = Board(comp, url=store_url)
    files = variants(comp, tmp_path, 10)
    a = submit_all(board, files[:5], "alpha")
    b = submit_all(board, files[5:], "beta")
    queue = Queue(board.ctx, "host:1")
    first = queue.claim(10)
    assert ids(first) == [a[0], b[0], a[1], b[1], a[2], b[2]]
    assert queue.claim(10) == []  # both hold three jobs' CPU seconds
    done = ScoredFile(Status.SCORED, public=0.5, private=0.5, score=0.5)
    assert job_module.record(board, first[0], done) == "recorded"  # one of alpha's ends
    assert ids(queue.claim(10)) == [a[3]]  # alpha gets that slot again; beta does not


def test_a_team_alone_gets_its_allowed_jobs_and_expired_ones_first(demo_dirs, tmp_path,
                                                                   store_url):
    comp = demo_copy(demo_dirs, tmp_path, daily_limit=10, uploads_per_hour=10)
    clock = {"now": dt.datetime(2030, 1, 1, 12)}
    board = Board(comp, url=store_url, now=lambda: clock["now"])
    alone = submit_all(board, variants(comp, tmp_path, 5), "alpha")
    queue = Queue(board.ctx, "host:1", lease_seconds=60)
    assert ids(queue.claim(10)) == alone[:2]  # two jobs' worth by default, idle workers or not
    assert queue.claim(10) == []
    # Its dispatcher gone, the leases run out: those jobs are no longer in flight, and are
    # taken again before the team's newer ones.
    clock["now"] += dt.timedelta(seconds=61)
    retaken = queue.claim(10)
    assert ids(retaken) == alone[:2] and [c.attempts for c in retaken] == [2, 2]


def test_the_cap_counts_each_job_at_the_scoring_cpu_limit(demo_dirs, tmp_path):
    comp = demo_copy(demo_dirs, tmp_path, scoring_cpu_seconds=100)
    assert team_jobs_in_flight(comp) == 2  # null: two jobs' worth
    assert team_jobs_in_flight(with_portal(comp, team_cpu_seconds_in_flight=299)) == 2
    assert team_jobs_in_flight(with_portal(comp, team_cpu_seconds_in_flight=300)) == 3
    # Below one job's limit, a team still gets one job: never starved.
    assert team_jobs_in_flight(with_portal(comp, team_cpu_seconds_in_flight=30)) == 1


def test_a_reread_competition_yaml_reaches_the_dispatchers_queue(demo_dirs, tmp_path):
    comp = demo_copy(demo_dirs, tmp_path)
    runner = ThreadRunner(1)
    dispatcher = Dispatcher(Board(comp), runner)
    try:
        assert dispatcher.queue.team_jobs == 2
        dispatcher.rebind(Board(with_portal(comp, team_cpu_seconds_in_flight=5 * 120)))
        assert dispatcher.queue.team_jobs == 5
    finally:
        runner.close()


def scored(board: Board, sids: list[int]) -> int:
    with board.engine.connect() as conn:
        return len(conn.execute(select(submissions.c.id).where(
            submissions.c.id.in_(sids), submissions.c.status == Status.SCORED)).all())


# --- the "done when" -------------------------------------------------------------------

@pytest.mark.parametrize("cap", [None, 50 * 120], ids=["default-cap", "no-effective-cap"])
def test_another_teams_job_waits_at_most_one_job_behind_a_backlog(demo_dirs, tmp_path, cap):
    """50 slow jobs of one team queued on two workers, then one job of another team: it is
    scored with at most three of the backlog's jobs finished in between (the two running
    when it came, one more on the other worker; measured 2 on an idle machine), whether
    or not the cap already keeps the backlog's team to two workers."""
    comp = demo_copy(demo_dirs, tmp_path, daily_limit=60, uploads_per_hour=60)
    comp = with_portal(comp, team_cpu_seconds_in_flight=cap)
    board = Board(comp)
    files = variants(comp, tmp_path, 51)
    backlog = submit_all(board, files[:50], "alpha")
    runner = ThreadRunner(2)
    dispatcher = Dispatcher(board, runner, scorer_spec=f"{__name__}:SleepScorer")
    dispatcher.start()
    try:
        # The worst moment to arrive: just as both workers took the backlog's next jobs.
        while scored(board, backlog) < 2:
            time.sleep(0.01)
        queued_at = time.monotonic()
        (late,) = submit_all(board, files[50:], "beta")
        dispatcher.wake()  # as the portal does on an upload
        deadline = queued_at + 60
        while (board.submissions.get(late)["status"] != Status.SCORED
               and time.monotonic() < deadline):
            time.sleep(0.05)
        waited = time.monotonic() - queued_at
    finally:
        dispatcher.stop()
        runner.close()
    with board.engine.connect() as conn:
        alpha_done = conn.execute(select(submissions.c.scored_at).where(
            submissions.c.id.in_(backlog), submissions.c.status == Status.SCORED)
            .order_by(submissions.c.scored_at)).scalars().all()
    gaps = [(b - a).total_seconds() for a, b in zip(alpha_done, alpha_done[2:], strict=False)]
    log.info("another team's job scored %.2f s after it was queued (job %.1f s; alpha's "
                "jobs ended %.2f s apart on each worker, mean)", waited, JOB_S,
                sum(gaps) / len(gaps) if gaps else float("nan"))
    assert board.submissions.get(late)["status"] == Status.SCORED
    # Counted in jobs, not seconds (a loaded machine stretches every job alike): from its
    # upload to its score, the backlog's team finishes at most the two jobs running when it
    # came and one more on the worker it did not take; a first-come queue would finish ~48.
    late_row = board.submissions.get(late)
    ahead = [t for t in alpha_done if late_row["submitted_at"] < t <= late_row["scored_at"]]
    assert len(ahead) <= 3, (len(ahead), waited)
