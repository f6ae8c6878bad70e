"""The scoring cluster talks only to its own (issue 33): the serve process's LocalCluster and
a named scheduler both speak TLS with client certificates; a client without them, plain or
TLS, with no certificate or one of another authority, runs nothing there; a plain `tcp://`
scheduler off loopback is refused before any connection; a killed worker's scoring child
dies with it."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from competition.errors import CompetitionError
from competition.interfaces.cli.output import EXIT_REFUSED
from competition.jobs import cluster_security
from competition.jobs.runners import DaskRunner
from tests.test_bad_input import run_cli
from tests.test_jobs import DASK, REPO, free_port, wait_until

distributed = pytest.importorskip("distributed")
from distributed.security import Security  # noqa: E402


class _NoCertificate(Security):  # type: ignore[misc]
    """A TLS client that presents no certificate and trusts any server."""

    def get_connection_args(self, role: str) -> dict:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return {"ssl_context": context, "require_encryption": True, "extra_conn_args": {}}


def _mark(path: str) -> str:
    Path(path).write_text("ran")
    return "ran"


def intruders(address: str) -> dict[str, Security | None]:
    """The ways in an outsider has: the port as plain TCP, TLS without a certificate, TLS
    with a certificate of an authority of its own."""
    port = address.rsplit(":", 1)[1]
    return {f"tcp://127.0.0.1:{port}": None, f"tls://127.0.0.1:{port}#none": _NoCertificate(),
            f"tls://127.0.0.1:{port}#foreign": Security.temporary()}


def assert_locked_out(address: str, tmp_path: Path) -> None:
    for target, security in intruders(address).items():
        marker = tmp_path / f"marker-{len(list(tmp_path.iterdir()))}"
        with pytest.raises((OSError, TimeoutError, TypeError, ValueError)):
            client = distributed.Client(target.split("#")[0], timeout="5s", security=security)
            try:
                client.run_on_scheduler(_mark, str(marker))
            finally:
                client.close()
        assert not marker.exists(), target


def test_the_serve_local_cluster_runs_jobs_for_its_process_only(tmp_path):
    runner = DaskRunner(workers=1)
    try:
        address = runner.client.scheduler.address
        assert address.startswith("tls://")
        assert runner.submit(_mark, str(tmp_path / "own"), key="own").result(60) == "ran"
        assert_locked_out(address, tmp_path)
    finally:
        runner.close()


@pytest.mark.parametrize("address", ["tcp://10.0.0.5:8786", "10.0.0.5:8786",
                                     "tcp://scheduler.example.org:8786",
                                     "ws://127.0.0.1:8786"])
def test_a_plain_scheduler_off_loopback_is_refused_before_connecting(address):
    started = time.monotonic()
    with pytest.raises(CompetitionError, match="cluster-certs") as refused:
        DaskRunner(address)
    assert time.monotonic() - started < 5  # no connection was tried
    assert "docs/deploy.md" in str(refused.value)


def test_serve_with_a_scheduler_nobody_listens_on_is_a_quick_configuration_error(
        demo_dirs, tmp_path, capsys):
    comp = tmp_path / "comp"
    shutil.copytree(demo_dirs["demo-nuclei"], comp)
    address = f"tcp://127.0.0.1:{free_port()}"  # closed: nothing listens there
    started = time.monotonic()
    code, _, err = run_cli(["serve", comp, "--scheduler", address], capsys)
    assert time.monotonic() - started < 10  # not Dask's 30 s of retries
    assert code == EXIT_REFUSED and address in err and "internal error" not in err, err


def test_a_tls_scheduler_needs_the_portals_certificate(tmp_path):
    with pytest.raises(CompetitionError, match="client certificate"):
        cluster_security.checked_address("tls://10.0.0.5:8786", None)
    with pytest.raises(CompetitionError, match="portal-key.pem missing"):
        cluster_security.client_security(tmp_path)
    assert cluster_security.checked_address("tcp://127.0.0.1:8786", None)
    assert cluster_security.checked_address("tcp://[::1]:8786", None)
    assert cluster_security.checked_address("localhost:8786", None)


def test_certificates_are_made_once_with_private_keys(tmp_path):
    folder = tmp_path / "certs"
    written = cluster_security.make_certificates(folder, days=2)
    assert sorted(p.name for p in written) == sorted(
        ["ca.pem", "ca-key.pem"] + [f"{r}{s}" for r in cluster_security.ROLES
                                    for s in (".pem", "-key.pem")])
    for path in written:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o600 if path.name.endswith("-key.pem") else 0o644), path.name
    before = {p.name: p.read_bytes() for p in written}
    with pytest.raises(CompetitionError, match="made once"):
        cluster_security.make_certificates(folder)
    assert {p.name: p.read_bytes() for p in written} == before  # nothing overwritten


def test_a_named_tls_cluster_as_deploy_md_starts_it(tmp_path):
    """`competition cluster-certs`, then `dask scheduler` and `dask worker` with their pairs,
    as docs/deploy.md says: the portal's runner (with its pair) scores there; nobody else
    connects, nor does a worker without a certificate join."""
    certs = tmp_path / "certs"
    subprocess.run([sys.executable, "-m", "competition", "cluster-certs", str(certs)],
                   check=True, capture_output=True, cwd=REPO)
    port = free_port()
    address = f"tls://127.0.0.1:{port}"
    tls = ["--tls-ca-file", str(certs / "ca.pem")]
    procs = []
    env = {**os.environ,  # the workers unpickle this module's function
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}

    def start(*command: str, name: str) -> subprocess.Popen:
        log = (tmp_path / f"{name}.log").open("wb")
        proc = subprocess.Popen([DASK, *command], stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=REPO, env=env)
        procs.append(proc)
        return proc

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
              "--protocol", "tls", *tls, "--tls-cert", str(certs / "scheduler.pem"),
              "--tls-key", str(certs / "scheduler-key.pem"), name="scheduler")
        start("worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
              "--host", "127.0.0.1", *tls, "--tls-cert", str(certs / "worker.pem"),
              "--tls-key", str(certs / "worker-key.pem"), name="worker")
        # A worker with no certificate of the cluster's authority never joins.
        start("worker", address.replace("tls://", "tcp://"), "--nthreads", "1", "--no-nanny",
              "--no-dashboard", "--host", "127.0.0.1", name="rogue-worker")
        runner = wait_until(lambda: _connected(address, certs), 60, "the TLS scheduler")
        try:
            wait_until(lambda: runner.capacity() >= 1, 60, "the worker")
            assert runner.submit(_mark, str(tmp_path / "own"), key="own").result(60) == "ran"
            time.sleep(2)  # time for the rogue worker to have tried
            assert runner.capacity() == 1
        finally:
            runner.close()
        assert_locked_out(address, tmp_path)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def _connected(address: str, certs: Path) -> DaskRunner | None:
    try:
        return DaskRunner(address, certs=certs)
    except (OSError, CompetitionError) as e:  # the scheduler is not listening yet
        if isinstance(e, CompetitionError) and "could not reach" not in str(e):
            raise
        return None


KILLED_WORKER = """
import sys
from pathlib import Path
from competition.board.prepared import PreparedCompetition
from tests.slow_submit import SlowScorer

if __name__ == "__main__":
    comp = PreparedCompetition.open(sys.argv[1])
    SlowScorer("forkserver").score(comp, Path(sys.argv[2]), "file.csv", details=False,
                                   started=lambda pid: print(pid, flush=True))
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie (a reparented zombie waits for an init that may never reap)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_killed_workers_scoring_child_dies_with_it(demo_dirs, tmp_path):
    """A process scoring as a worker does (a fork server's child, as the jobs start it) is
    SIGKILLed mid-scoring: its scoring child and the fork server end within seconds instead
    of running on to their CPU limit."""
    script = tmp_path / "worker.py"
    script.write_text(KILLED_WORKER)
    root = demo_dirs["demo-nuclei"]
    env = {**os.environ, "COMPETITION_TEST_SCORER_PAUSE": "120",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    worker = subprocess.Popen([sys.executable, str(script), str(root),
                               str(root / "public" / "sample_submission.csv")],
                              stdout=subprocess.PIPE, env=env, cwd=REPO,
                              start_new_session=True)
    try:
        assert worker.stdout is not None
        child = int(worker.stdout.readline())
        server = int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert _running(child) and _running(server) and server != worker.pid
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
        wait_until(lambda: not _running(child) and not _running(server), 10,
                   "the scoring child and its fork server to end")
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)


HOLDS_NO_SOLUTION = """
import sys, time
from pathlib import Path

root = Path(sys.argv[1]).resolve()
private = str(root / "private")
opened = []

def audit(event, args):
    if event == "open" and isinstance(args[0], (str, bytes)):
        path = str(Path(args[0] if isinstance(args[0], str) else args[0].decode()).resolve())
        if path.startswith(private):
            opened.append(path)

sys.addaudithook(audit)
from fastapi.testclient import TestClient
from competition.interfaces.web.app import create_app
from competition.jobs.runners import ThreadRunner

if __name__ == "__main__":
    app = create_app(root, runner=ThreadRunner(1))
    portal = app.state.portal
    token = portal.board.teams.issue_token("owls")
    with TestClient(app) as client:
        answer = client.post("/api/submissions?wait=60",
                             headers={"Authorization": f"Bearer {token}"},
                             files={"file": ("s.csv", Path(sys.argv[2]).read_bytes())})
        client.get("/leaderboard"), client.get("/api/leaderboard")
    print(answer.status_code, answer.json()["status"], len(opened), opened[:3])
"""


def test_the_portal_and_its_jobs_never_read_the_solution(demo_dirs, tmp_path):
    """A portal process (its pages, its API, the dispatcher and the jobs it runs, as a worker
    runs them) opens nothing under private/: only the scoring child, another process, reads
    the solution."""
    import shutil

    root = Path(shutil.copytree(demo_dirs["demo-nuclei"], tmp_path / "comp"))
    script = tmp_path / "portal.py"
    script.write_text(HOLDS_NO_SOLUTION)
    env = {**os.environ, "COMPETITION_TRACKING": "off",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(script), str(root),
                           str(root / "public" / "sample_submission.csv")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[:3] == ["201", "scored", "0"], done.stdout


def test_a_plain_scheduler_dialled_on_loopback_but_listening_everywhere_is_refused(tmp_path):
    """`dask scheduler` with its default host listens on every interface: reached through
    127.0.0.1 it still serves anyone on the network, so the portal judges where it listens."""
    port = free_port()
    log = (tmp_path / "scheduler.log").open("wb")
    proc = subprocess.Popen([DASK, "scheduler", "--port", str(port), "--no-dashboard"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            cwd=REPO)
    try:
        client = wait_until(lambda: _plain_client(port), 60, "the plain scheduler")
        listening = client.scheduler_info()["address"]
        client.close()
        if cluster_security.is_loopback(listening.split("://")[1].rsplit(":", 1)[0]):
            pytest.skip("this machine has no interface but loopback")
        with pytest.raises(CompetitionError, match="listens on .*off loopback"):
            DaskRunner(f"tcp://127.0.0.1:{port}")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def _plain_client(port: int):
    try:
        return distributed.Client(f"tcp://127.0.0.1:{port}", timeout="2s")
    except OSError:
        return None
