"""One queue and one job for every door (issue 31): a command-line submission is queued and
claimed like a portal upload, so a command killed on one host is taken back and scored once by
another when its lease runs out (no PID is looked at); the CLI and the portal share one daily
limit; a job whose lease ran out MAX_ATTEMPTS times ends failed and retryable; and
`competition jobs` drains what a killed serve process left."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from competition.board.board import Board
from competition.board.context import LimitReached
from competition.board.prepared import PreparedCompetition
from competition.board.queue import MAX_ATTEMPTS, Queue
from competition.board.rules import utcnow
from competition.board.store.schema import score_history, submissions
from tests.test_bad_input import run_cli
from tests.test_jobs import free_port, variants, wait_until
from tests.test_store import scoring_child
from tests.test_web import Portal

REPO = Path(__file__).resolve().parents[1]


def copy_comp(demo_dirs, tmp_path: Path, **rules) -> Path:
    import yaml

    root = Path(shutil.copytree(demo_dirs["demo-nuclei"], tmp_path / "comp"))
    doc = yaml.safe_load((root / "competition.yaml").read_text())
    doc["rules"].update(rules)
    (root / "competition.yaml").write_text(yaml.safe_dump(doc))
    return root


def host_env(host: str, store_url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a process playing `host` (COMPETITION_HOST_NAME)."""
    env = {**os.environ, "COMPETITION_HOST_NAME": host, **extra,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    if store_url:
        env["COMPETITION_STORE_URL"] = store_url
    return env


def history_count(board: Board, submission_id: int) -> int:
    with board.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(score_history).where(
            score_history.c.submission_id == submission_id)).scalar_one()


def leases_ran_out(board: Board) -> bool:
    with board.engine.connect() as conn:
        latest = conn.execute(select(func.max(submissions.c.lease_until)).where(
            submissions.c.status == "scoring")).scalar_one()
    return latest is None or latest < utcnow()


def drain(root: Path, host: str, store_url: str | None = None) -> subprocess.CompletedProcess:
    """`competition jobs DIR`, as host `host`."""
    return subprocess.run([sys.executable, "-m", "competition", "jobs", str(root)],
                          env=host_env(host, store_url, COMPETITION_LEASE_SECONDS="2"),
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def test_a_cli_submit_killed_on_one_host_is_scored_once_by_another(demo_dirs, tmp_path,
                                                                   postgres_server):
    url = postgres_server.new_database()
    root = copy_comp(demo_dirs, tmp_path, daily_limit=3)
    board = Board(PreparedCompetition.open(root), url=url)
    files = variants(PreparedCompetition.open(root), tmp_path, 4)
    # Host A: a CLI submit whose scorer child pauses a minute, killed (its whole process
    # group) while it scores.
    a = subprocess.Popen([sys.executable, "-m", "tests.slow_submit", str(root), str(files[0]),
                          "alpha"], cwd=REPO, start_new_session=True,
                         env=host_env("host-a", url, COMPETITION_LEASE_SECONDS="2",
                                      COMPETITION_TEST_SCORER_PAUSE="60"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    scoring_child(board, 1, a)
    assert board.submissions.get(1)["claimed_by"] == f"host-a:{a.pid}"
    os.killpg(a.pid, signal.SIGKILL)
    a.wait()
    assert board.submissions.get(1)["status"] == "scoring"  # held until the lease runs out
    wait_until(lambda: leases_ran_out(board), 30, "host A's lease to run out")
    # Host B takes it back and scores it, once.
    b = drain(root, "host-b", url)
    assert b.returncode == 0, b.stderr
    assert "1 job(s) run" in b.stdout
    row = board.submissions.get(1)
    assert row["status"] == "scored" and row["counted"] and row["public_score"] is not None
    assert row["claimed_by"].startswith("host-b:") and row["attempts"] == 2
    assert history_count(board, 1) == 1
    # Counted once throughout: exactly daily_limit - 1 more for the day.
    for path in files[1:3]:
        assert board.submissions.submit(path, "alpha").status == "scored"
    with pytest.raises(LimitReached):
        board.submissions.submit(files[3], "alpha")


def test_cli_submits_and_portal_uploads_share_one_daily_limit(demo_dirs, tmp_path, store_url,
                                                              capsys, monkeypatch):
    if store_url:
        monkeypatch.setenv("COMPETITION_STORE_URL", store_url)
    root = Path(shutil.copytree(demo_dirs["demo-nuclei"], tmp_path / "comp"))
    web = Portal(root, daily_limit=2)
    try:
        first = web.submit("owls", web.variant(0))
        assert first.status_code == 201 and first.json()["remaining_today"] == 1
        file = tmp_path / "cli.csv"
        file.write_bytes(web.variant(1))
        code, out, err = run_cli(["submit", root, file, "--team", "owls"], capsys)
        assert code == 0, err
        assert "scored submission 2" in out and "0 submission(s) left today" in out
        refused = web.submit("owls", web.variant(2))
        assert refused.status_code == 429 and "used its 2 submissions" in refused.text
        file.write_bytes(web.variant(3))
        code, out, err = run_cli(["submit", root, file, "--team", "owls"], capsys)
        assert code == 2 and "used its 2 submissions" in err
    finally:
        web.app.state.portal.stop_jobs()  # its dispatcher outlives no store


def test_a_job_interrupted_max_attempts_times_ends_failed_and_retryable(demo_dirs, tmp_path,
                                                                        store_url):
    root = copy_comp(demo_dirs, tmp_path, daily_limit=2)
    clock = {"now": dt.datetime(2030, 1, 1, 12)}
    board = Board(PreparedCompetition.open(root), url=store_url, now=lambda: clock["now"])
    files = variants(board.comp, tmp_path, 2)
    ids = [board.submissions.submit(path, "owls", queue=True).id for path in files]
    queue = Queue(board.ctx, "host-x:1", lease_seconds=60)
    for attempt in range(1, MAX_ATTEMPTS + 1):  # each holder dies: the lease runs out
        by_batch = queue.claim(1)
        by_id = queue.claim_one(ids[1])  # the command line's own claim counts the same
        assert [c.submission_id for c in by_batch] == [ids[0]] and by_id is not None
        assert by_batch[0].attempts == by_id.attempts == attempt
        clock["now"] += dt.timedelta(seconds=61)
    assert queue.claim(5) == [] and queue.claim_one(ids[1]) is None
    for sid in ids:
        row = board.submissions.get(sid)
        assert row["status"] == "failed" and not row["counted"]
        assert f"interrupted {MAX_ATTEMPTS} times" in row["error"]
        assert "can be retried" in row["error"]
    assert board.submissions.outcome_of(ids[0], "owls").remaining_today == 2  # slots back
    retried = board.submissions.retry(ids[0], "owls")
    assert retried.status == "scored" and retried.remaining_today == 1
    assert board.submissions.get(ids[0])["attempts"] == 1  # counted again from none
    assert history_count(board, ids[0]) == 1


def test_competition_jobs_drains_a_queue_left_by_a_killed_serve_process(demo_dirs, tmp_path):
    root = copy_comp(demo_dirs, tmp_path, daily_limit=5)
    board = Board(PreparedCompetition.open(root))
    ids = [board.submissions.submit(path, f"team{k}", queue=True).id
           for k, path in enumerate(variants(board.comp, tmp_path, 3))]
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "competition", "serve", str(root), "--port", str(port),
         "--threads", "--workers", "2", "--scorer", "tests.slow_submit:SlowScorer"],
        env=host_env("host-a", COMPETITION_LEASE_SECONDS="2",
                     COMPETITION_TEST_SCORER_PAUSE="60"),
        cwd=REPO, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    try:
        def two_claimed() -> bool:
            rows = [board.submissions.get(sid) for sid in ids]
            return sum(r["status"] == "scoring" for r in rows) == 2

        wait_until(two_claimed, 120, "the serve process to claim two jobs")
        time.sleep(1)  # their scorers started (and renewed once)
    finally:
        os.killpg(serve.pid, signal.SIGKILL)
        serve.wait(30)
    wait_until(lambda: leases_ran_out(board), 30, "the killed serve process's leases")
    done = drain(root, "host-b")
    assert done.returncode == 0, done.stderr
    assert "3 job(s) run" in done.stdout
    rows = [board.submissions.get(sid) for sid in ids]
    assert [r["status"] for r in rows] == ["scored"] * 3
    assert sorted(r["attempts"] for r in rows) == [1, 2, 2]
    assert all(history_count(board, sid) == 1 for sid in ids)
    again = drain(root, "host-b")  # nothing left: a second drain runs nothing
    assert again.returncode == 0 and "0 job(s) run" in again.stdout


def test_competition_jobs_leaves_running_leases_and_takes_old_pending_rows(demo_dirs,
                                                                          tmp_path, capsys):
    root = copy_comp(demo_dirs, tmp_path)
    board = Board(PreparedCompetition.open(root))
    held, old = [board.submissions.submit(path, f"team{k}", queue=True).id
                 for k, path in enumerate(variants(board.comp, tmp_path, 2))]
    assert Queue(board.ctx, "elsewhere:1", lease_seconds=600).claim_one(held) is not None
    with board.engine.begin() as conn:  # a row left by a command of an earlier version
        conn.execute(submissions.update().where(submissions.c.id == old)
                     .values(status="pending"))
    code, out, err = run_cli(["jobs", root], capsys)
    assert code == 0, err
    assert "1 job(s) run" in out and "1 job(s) held by others" in out
    assert board.submissions.get(old)["status"] == "scored"
    row = board.submissions.get(held)
    assert row["status"] == "scoring" and row["claimed_by"] == "elsewhere:1"
