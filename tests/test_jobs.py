"""Scoring as jobs: the queue in the store (claims, leases, results recorded once), the
dispatcher, and the whole portal on a real Dask cluster (a `dask scheduler` and two `dask
worker` processes on loopback) with two serve processes on one PostgreSQL store, a worker
killed and a serve process restarted mid-run."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from competition.board.board import Board
from competition.board.prepared import PreparedCompetition
from competition.board.queue import Queue
from competition.board.scorer_process import ScoredFile
from competition.board.status import Status
from competition.board.store.schema import score_history, submissions
from competition.jobs import job as job_module
from competition.jobs.dispatcher import Dispatcher
from competition.jobs.runners import ThreadRunner
from tests.test_bad_input import nuclei_valid

REPO = Path(__file__).resolve().parents[1]
DASK = str(Path(sys.executable).parent / "dask")  # Dask's own command line


def demo_copy(demo_dirs, tmp_path, name="comp", **rules) -> PreparedCompetition:
    root = Path(shutil.copytree(demo_dirs["demo-nuclei"], tmp_path / name))
    if rules:
        import yaml

        doc = yaml.safe_load((root / "competition.yaml").read_text())
        doc["rules"].update(rules)
        (root / "competition.yaml").write_text(yaml.safe_dump(doc))
    return PreparedCompetition.open(root)


def variants(comp: PreparedCompetition, tmp_path: Path, n: int) -> list[Path]:
    """Distinct valid files (one extra one-pixel object each)."""
    base = nuclei_valid(comp.root)
    first_id = base.splitlines()[1].split(",")[0]
    paths = []
    for k in range(n):
        path = tmp_path / f"v{k}.csv"
        path.write_text(base + f"{first_id},{k + 2} 1\n")
        paths.append(path)
    return paths


def history_count(board: Board, submission_id: int) -> int:
    with board.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(score_history).where(
            score_history.c.submission_id == submission_id)).scalar_one()


# --- the queue -----------------------------------------------------------------------------

def test_queued_submissions_take_their_slot_and_wait(demo_dirs, tmp_path, store_url):
    comp = demo_copy(demo_dirs, tmp_path, daily_limit=2)
    board = Board(comp, url=store_url)
    paths = variants(comp, tmp_path, 3)
    first = board.submissions.submit(paths[0], "owls", queue=True)
    assert first.status == "queued" and first.public_score is None
    assert first.remaining_today == 1
    board.submissions.submit(paths[1], "owls", queue=True)
    from competition.board.context import LimitReached

    with pytest.raises(LimitReached):  # queued submissions count toward the day's limit
        board.submissions.submit(paths[2], "owls", queue=True)


def test_claims_are_exclusive_and_results_recorded_only_under_the_claim(demo_dirs, tmp_path,
                                                                        store_url):
    comp = demo_copy(demo_dirs, tmp_path)
    board = Board(comp, url=store_url)
    ids = [board.submissions.submit(p, f"t{k}", queue=True).id
           for k, p in enumerate(variants(comp, tmp_path, 6))]
    a, b = Queue(board.ctx, "host:1"), Queue(board.ctx, "host:2")
    claimed: list = []

    def take(queue: Queue) -> None:
        for _ in range(6):
            claimed.extend(queue.claim(1))

    threads = [threading.Thread(target=take, args=(q,)) for q in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(c.submission_id for c in claimed) == sorted(ids)  # each once, none lost
    claim = claimed[0]
    result = ScoredFile(Status.SCORED, public=0.5, private=0.25, score=0.3)
    # A stale copy of the claim (another token) records nothing.
    stale = type(claim)(claim.submission_id, "0" * 32, claim.file_path, claim.file_name, 1)
    assert job_module.record(board, stale, result) == "lost"
    assert board.submissions.get(claim.submission_id)["status"] == "scoring"
    assert job_module.record(board, claim, result) == "recorded"
    assert job_module.record(board, claim, result) == "lost"  # a second run of the same job
    row = board.submissions.get(claim.submission_id)
    assert row["status"] == "scored" and row["public_score"] == 0.5
    assert history_count(board, claim.submission_id) == 1


def test_expired_leases_give_their_jobs_back_whatever_the_pids(demo_dirs, tmp_path,
                                                                store_url):
    comp = demo_copy(demo_dirs, tmp_path)
    clock = {"now": dt.datetime(2030, 1, 1, 12)}
    board = Board(comp, url=store_url, now=lambda: clock["now"])
    sid = board.submissions.submit(variants(comp, tmp_path, 1)[0], "owls", queue=True).id
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    first = Queue(board.ctx, f"{host}:{gone.pid}", lease_seconds=60).claim(5)
    assert [c.submission_id for c in first] == [sid]
    # Neither another host nor a restarted process of this host takes a job whose lease
    # runs, though its holder's process is gone: no PID is looked at.
    other = Queue(board.ctx, "elsewhere:1", lease_seconds=60)
    assert other.claim(5) == [] and other.claim_one(sid) is None
    assert Queue(board.ctx, f"{host}:{os.getpid()}").claim(5) == []
    clock["now"] += dt.timedelta(seconds=61)
    second = other.claim(5)  # the lease ran out: taken over, with a new token
    assert [c.submission_id for c in second] == [sid] and second[0].token != first[0].token
    assert second[0].attempts == 2
    assert job_module.record(board, first[0], ScoredFile(Status.SCORED, public=1.0)) == "lost"
    assert board.submissions.get(sid)["claimed_by"] == "elsewhere:1"


def test_the_dispatcher_scores_queued_submissions_once(demo_dirs, tmp_path):
    comp = demo_copy(demo_dirs, tmp_path)
    board = Board(comp)
    ids = [board.submissions.submit(p, f"t{k % 3}", queue=True).id
           for k, p in enumerate(variants(comp, tmp_path, 6))]
    runner = ThreadRunner(2)
    dispatcher = Dispatcher(board, runner, poll_seconds=0.1)
    dispatcher.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(
                board.submissions.get(i)["status"] != "scored" for i in ids):
            time.sleep(0.2)
    finally:
        dispatcher.stop()
        runner.close()
    assert all(board.submissions.get(i)["status"] == "scored" for i in ids)
    assert all(history_count(board, i) == 1 for i in ids)


def test_a_job_that_cannot_run_is_failed_with_its_reason(demo_dirs, tmp_path):
    comp = demo_copy(demo_dirs, tmp_path)
    board = Board(comp)
    sid = board.submissions.submit(variants(comp, tmp_path, 1)[0], "owls", queue=True).id
    runner = ThreadRunner(1)
    dispatcher = Dispatcher(board, runner, scorer_spec="no.such.module:Scorer",
                            poll_seconds=0.1)
    dispatcher.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and board.submissions.get(sid)["status"] != "failed":
            time.sleep(0.1)
    finally:
        dispatcher.stop()
        runner.close()
    row = board.submissions.get(sid)
    assert row["status"] == "failed" and "ModuleNotFoundError" in row["error"]
    assert "retried" in row["error"] and not row["counted"]


# --- the portal on a real cluster ----------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


class Cluster:
    """A `dask scheduler`, worker processes and serve processes, all on loopback, started in
    process groups of their own and stopped together; TLS with the certificates of
    `competition cluster-certs`, each role with its own pair, as docs/deploy.md says."""

    def __init__(self, root: Path, env: dict[str, str], log_dir: Path):
        from competition.jobs.cluster_security import make_certificates

        self.root, self.env, self.logs = root, env, log_dir
        self.procs: list[subprocess.Popen] = []
        self.scheduler_port = free_port()
        self.address = f"tls://127.0.0.1:{self.scheduler_port}"
        self.certs = log_dir / "certs"
        make_certificates(self.certs)

    def tls(self, role: str) -> list[str]:
        return ["--tls-ca-file", str(self.certs / "ca.pem"),
                "--tls-cert", str(self.certs / f"{role}.pem"),
                "--tls-key", str(self.certs / f"{role}-key.pem")]

    def start(self, name: str, command: list[str]) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=REPO)
        self.procs.append(proc)
        return proc

    def scheduler(self) -> None:
        self.start("scheduler", [DASK, "scheduler", "--host", "127.0.0.1",
                                 "--port", str(self.scheduler_port), "--no-dashboard",
                                 "--protocol", "tls", *self.tls("scheduler")])

    def worker(self, name: str) -> subprocess.Popen:
        return self.start(name, [DASK, "worker", self.address, "--nthreads", "1",
                                 "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
                                 *self.tls("worker")])

    def serve(self, name: str, port: int) -> subprocess.Popen:
        proc = self.start(name, [sys.executable, "-m", "competition", "serve", str(self.root),
                                 "--port", str(port), "--scheduler", self.address,
                                 "--cluster-certs", str(self.certs)])
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/leaderboard"), 120,
                   f"serve process {name}")
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.procs:
            proc.wait(30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_two_serve_processes_and_two_workers_score_everything_exactly_once(
        demo_dirs, tmp_path, postgres_server):
    """40 teams send 6 files each (240) at once to two serve processes sharing one
    PostgreSQL store and a cluster of two workers, with a daily limit of 5: exactly 200
    accepted, each scored exactly once, each logged once to each MLflow store, although one
    worker is killed (SIGKILL) and one serve process restarted while they run."""
    from mlflow import MlflowClient

    url = postgres_server.new_database()
    comp = demo_copy(demo_dirs, tmp_path, daily_limit=5, uploads_per_hour=20)
    board = Board(comp, url=url)
    teams = [f"team{k:02d}" for k in range(40)]
    tokens = {t: board.teams.issue_token(t) for t in teams}
    files = variants(comp, tmp_path, 6 * len(teams))
    (tmp_path / "mlflow.yaml").write_text(
        f"tracking_uri: sqlite:///{tmp_path / 'participants.db'}\n"
        f"organizer_tracking_uri: sqlite:///{tmp_path / 'organizers.db'}\n"
        f"artifact_location: {tmp_path / 'mlruns'}\n"
        f"organizer_artifact_location: {tmp_path / 'mlruns-organizers'}\n")
    # A lease of 10 s: the restarted serve process's predecessor's jobs come back that soon.
    env = {**os.environ, "COMPETITION_STORE_URL": url, "COMPETITION_TRACKING": "on",
           "COMPETITION_LEASE_SECONDS": "10",
           "COMPETITION_MLFLOW_CONFIG": str(tmp_path / "mlflow.yaml"),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cluster = Cluster(comp.root, env, tmp_path)
    ports = [free_port(), free_port()]
    try:
        cluster.scheduler()
        workers = [cluster.worker("worker-a"), cluster.worker("worker-b")]
        serve_a = cluster.serve("serve-a", ports[0])
        cluster.serve("serve-b", ports[1])
        answers: list[tuple[str, int, dict]] = []
        lock = threading.Lock()

        def team_sends(k: int, team: str) -> None:
            for j in range(6):
                port = ports[(k + j) % 2]
                for _ in range(60):  # a serve process being restarted: try again shortly
                    try:
                        r = httpx.post(f"http://127.0.0.1:{port}/api/submissions",
                                       headers={"Authorization": f"Bearer {tokens[team]}"},
                                       files={"file": (f"{team}-{j}.csv",
                                                       files[6 * k + j].read_bytes())},
                                       timeout=60)
                        break
                    except httpx.HTTPError:
                        port = ports[(k + j + 1) % 2]
                        time.sleep(0.5)
                with lock:
                    answers.append((team, r.status_code, r.json()))

        senders = [threading.Thread(target=team_sends, args=(k, t)) for k, t in
                   enumerate(teams)]
        for s in senders:
            s.start()

        def scored_count() -> int:
            with board.engine.connect() as conn:
                return conn.execute(select(func.count()).select_from(submissions).where(
                    submissions.c.status == "scored")).scalar_one()

        # Mid-run: a worker dies at once, and a serve process is restarted.
        wait_until(lambda: scored_count() >= 10, 300, "the first scores")
        os.kill(workers[0].pid, signal.SIGKILL)
        cluster.worker("worker-c")  # a replacement joins, as on a real cluster
        os.killpg(serve_a.pid, signal.SIGKILL)
        serve_a.wait(30)
        cluster.serve("serve-a-again", ports[0])
        for s in senders:
            s.join(300)
        assert sorted({code for _, code, _ in answers}) == [202, 429]
        accepted = [body["id"] for _, code, body in answers if code == 202]
        assert len(answers) == 240 and len(accepted) == 200 == len(set(accepted))
        for team in teams:  # the limit, exactly, for every team
            assert sum(t == team and code == 202 for t, code, _ in answers) == 5
        wait_until(lambda: scored_count() == 200, 600, "every submission scored")

        def logging_done() -> bool:  # jobs log after they commit
            with board.engine.connect() as conn:
                return not conn.execute(select(func.count()).select_from(submissions).where(
                    submissions.c.tracking_pending.is_(True))).scalar_one()

        wait_until(logging_done, 300, "every submission logged to MLflow")
    finally:
        cluster.stop()
    with board.engine.connect() as conn:
        rows = conn.execute(select(submissions.c.id, submissions.c.status)).all()
        history = dict(conn.execute(select(score_history.c.submission_id, func.count())
                                    .group_by(score_history.c.submission_id)).all())
    assert sorted(r.id for r in rows) == sorted(accepted)  # nothing lost, nothing extra
    assert {r.status for r in rows} == {"scored"}
    assert all(history[i] == 1 for i in accepted)  # each recorded exactly once
    for store in ("participants", "organizers"):
        client = MlflowClient(f"sqlite:///{tmp_path / f'{store}.db'}")
        ids = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(ids, "tags.kind = 'submission'", max_results=5000)
        logged = sorted(int(r.data.tags["submission_id"]) for r in runs)
        assert logged == sorted(accepted), store  # every one logged once, none lost


def test_logging_owed_by_a_job_that_died_after_its_commit_is_done_once(
        demo_dirs, tmp_path, monkeypatch):
    """A job killed between committing its result and logging it leaves the submission marked
    pending; a rerun of the job (or the dispatcher's sweep) logs it, once, even when the dead
    job had logged it already."""
    from tests.test_tracking import EMBEDDED, runs_of, switch_on

    config = switch_on(dict(EMBEDDED), tmp_path, monkeypatch)
    comp = demo_copy(demo_dirs, tmp_path)
    board = Board(comp)
    sid = board.submissions.submit(variants(comp, tmp_path, 1)[0], "owls", queue=True).id
    (claim,) = Queue(board.ctx, "host:1").claim(1)
    result = board.submissions.score_stored(comp.root / claim.file_path, claim.file_name)
    from competition.board.queue import finish_claim
    from competition.board.store import db

    with db.write(board.engine) as conn:  # the job's commit, then its worker dies
        assert finish_claim(conn, claim, result)
        event = board.submissions.record(conn, sid, result, reason="submit")
    assert board.submissions.get(sid)["tracking_pending"]
    for audience in ("participants", "organizers"):
        assert runs_of(config, audience, comp, sid)[1] == []
    # Dask reruns the job: the claim is gone, the logging is owed.
    assert job_module.run_job(str(comp.root), None, claim) == "lost"
    assert not board.submissions.get(sid)["tracking_pending"]
    for audience in ("participants", "organizers"):
        (run,) = runs_of(config, audience, comp, sid)[1]
        assert run.data.tags["score_event"] == str(event)
        assert run.data.metrics["public_score"] == result.public
    # Logged, but killed before the mark was cleared: logging again makes no second run.
    with db.write(board.engine) as conn:
        conn.execute(submissions.update().where(submissions.c.id == sid)
                     .values(tracking_pending=True))
    assert board.submissions.track_pending(sid)
    assert not board.submissions.track_pending(sid)  # nothing owed any more
    for audience in ("participants", "organizers"):
        assert len(runs_of(config, audience, comp, sid)[1]) == 1
