"""A throwaway `mlflow server` process on loopback (SQLite backend, proxied artifacts)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from competition.interfaces.subprocesses import stop_group


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, log: Path, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited ({log.read_text()[-2000:]})")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"{url} did not answer within {seconds} s ({log.read_text()[-2000:]})")


class Server:
    def __init__(self, root: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "server.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server",
             "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
             "--artifacts-destination", str(root / "artifacts"),
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        wait_for(f"{self.url}/health", self.process, self.log)

    def stop(self) -> None:
        stop_group(self.process)



class AuthServer(Server):
    """The participants' server as `competition ui --auth` starts it: MLflow's basic-auth app
    (users see no experiment unless granted), artifacts proxied from a root of its own."""

    admin = "admin"

    def __init__(self, root: Path):
        import secrets

        from competition.interfaces.mlflow_ui import auth_environment, server_command

        self.password = secrets.token_urlsafe(16)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "server.log"
        self.store = f"sqlite:///{root / 'store.db'}"
        self.artifacts = root / "artifacts"
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
               **auth_environment(self.store, root, self.admin, self.password)}
        self.process = subprocess.Popen(
            server_command(self.store, str(self.artifacts), "127.0.0.1", self.port, auth=True),
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
            env=env)
        wait_for(f"{self.url}/health", self.process, self.log)
