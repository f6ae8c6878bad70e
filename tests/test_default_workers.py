"""Scoring jobs on Dask workers exactly as `dask worker` starts them by default: under a
nanny, in daemonic processes, with no Dask setting or environment variable for the
competition's sake (issue 31). A job scores in a child process of its own, which a daemonic
process may not start through `multiprocessing.Process.start`."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

from competition.board.board import Board
from competition.board.prepared import PreparedCompetition
from competition.board.scorer_process import ChildScorer
from competition.errors import CompetitionError
from competition.jobs.dispatcher import Dispatcher
from competition.jobs.runners import DaskRunner
from tests.test_cluster_security import _running
from tests.test_jobs import DASK, REPO, Cluster, demo_copy, history_count, variants, wait_until

TERMINAL = {"scored", "invalid", "failed"}


def test_default_dask_workers_score_every_submission_exactly_once(demo_dirs, tmp_path,
                                                                   postgres_server):
    """20 submissions of 20 teams, queued at once, go to a `dask scheduler` and two default
    `dask worker` processes (with their nannies, TLS with `competition cluster-certs`'
    certificates): all 20 `scored`, each with exactly one score_history row."""
    url = postgres_server.new_database()
    comp = demo_copy(demo_dirs, tmp_path)
    board = Board(comp, url=url)
    ids = [board.submissions.submit(path, f"team{k:02d}", queue=True).id
           for k, path in enumerate(variants(comp, tmp_path, 20))]
    cluster = Cluster(comp.root, _plain_env(), tmp_path)
    runner = dispatcher = None
    try:
        cluster.scheduler()
        for name in ("worker-a", "worker-b"):
            _default_worker(cluster, name)
        runner = _connected(cluster, 2)
        dispatcher = Dispatcher(board, runner, store_url=url, poll_seconds=0.1)
        dispatcher.start()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and any(
                board.submissions.get(i)["status"] not in TERMINAL for i in ids):
            time.sleep(0.5)
    finally:
        _stop(dispatcher, runner, cluster)
    rows = [board.submissions.get(i) for i in ids]
    assert [r["status"] for r in rows] == ["scored"] * 20, {r["error"] for r in rows}
    assert all(history_count(board, i) == 1 for i in ids)


def test_a_killed_default_workers_scoring_child_dies_with_it(demo_dirs, tmp_path):
    """A default `dask worker`'s worker process (under its nanny) is SIGKILLed while a job
    scores: the scoring child and its fork server end within seconds, none outlives it."""
    comp = demo_copy(demo_dirs, tmp_path)
    board = Board(comp)
    board.submissions.submit(variants(comp, tmp_path, 1)[0], "owls", queue=True)
    cluster = Cluster(comp.root, {**_plain_env(), "COMPETITION_TEST_SCORER_PAUSE": "120"},
                      tmp_path)
    runner = dispatcher = None
    try:
        cluster.scheduler()
        nanny = _default_worker(cluster, "worker")
        runner = _connected(cluster, 1)
        dispatcher = Dispatcher(board, runner, scorer_spec="tests.slow_submit:SlowScorer",
                                poll_seconds=0.1)
        dispatcher.start()
        child = wait_until(lambda: _scoring_child(nanny.pid), 120, "the scoring child")
        server = _parent(child)
        worker = _parent(server)
        assert _parent(worker) == nanny.pid and _running(child) and _running(server)
        os.kill(worker, signal.SIGKILL)
        wait_until(lambda: not _running(child) and not _running(server), 10,
                   "the scoring child and its fork server to end")
    finally:
        _stop(dispatcher, runner, cluster)


def _stop(dispatcher, runner, cluster) -> None:
    if dispatcher is not None:
        dispatcher.stop()
    if runner is not None:
        runner.close()
    cluster.stop()


def _plain_env() -> dict[str, str]:
    """Only what a worker needs to import this checkout: no Dask setting of any kind."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DASK_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    return env


def _default_worker(cluster: Cluster, name: str):
    """`dask worker` as a user starts it: nanny and daemonic worker, one thread, TLS."""
    return cluster.start(name, [DASK, "worker", cluster.address, "--nthreads", "1",
                                "--no-dashboard", "--host", "127.0.0.1",
                                *cluster.tls("worker")])


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _scoring_child(nanny: int) -> int | None:
    """A process three generations below the nanny (nanny, worker, fork server, child)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            line = [int(entry.name)]
            while len(line) < 4 and line[-1] > 1:
                line.append(_parent(line[-1]))
        except (OSError, ValueError, IndexError):
            continue
        if len(line) == 4 and line[3] == nanny:
            return line[0]
    return None


def _connected(cluster: Cluster, workers: int) -> DaskRunner:
    """A runner on the cluster once its workers have joined (they start in seconds)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            runner = DaskRunner(cluster.address, certs=cluster.certs)
        except (OSError, CompetitionError) as e:  # the scheduler is not listening yet
            if isinstance(e, CompetitionError) and "could not reach" not in str(e):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
            continue
        while runner.capacity() < workers and time.monotonic() < deadline:
            time.sleep(0.25)
        assert runner.capacity() == workers, "the workers joined"
        return runner


def _score_in_a_daemon(root: str, path: str, answer) -> None:
    """In a daemonic process, as a default Dask worker: score `path` as a job does."""
    comp = PreparedCompetition.open(root)
    result = ChildScorer("forkserver").score(comp, Path(path), Path(path).name,
                                             details=False)
    answer.put((multiprocessing.current_process().daemon, str(result.status), result.error))


def test_a_daemonic_process_scores_with_the_em_scorers_own_processes(demo_dirs, tmp_path):
    """The EM scorer spreads a volume's slices over processes of its own inside the scoring
    child: the child must not inherit its daemonic worker's flag, nor be refused."""
    root = demo_dirs["demo-em"]
    comp = PreparedCompetition.open(root)
    path = tmp_path / f"day-one{comp.task.submission_suffix}"
    path.write_bytes(comp.task.naive_submission(comp.public_dir))
    ctx = multiprocessing.get_context("spawn")  # as the nanny starts its worker
    answer = ctx.Queue()
    daemon = ctx.Process(target=_score_in_a_daemon, args=(str(root), str(path), answer),
                         daemon=True)
    daemon.start()
    try:
        assert answer.get(timeout=120) == (True, "scored", None)
    finally:
        daemon.join(30)
