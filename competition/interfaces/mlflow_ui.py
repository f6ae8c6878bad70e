"""`competition ui`: the MLflow UI on the configured tracking store, opened on the runs table.

The server runs in a process group of its own (it starts workers), stopped as a whole; MLflow's
GenAI job runners are not started. The address is printed once the server answers, pointing at
the competition's runs (MLflow 3 opens experiments on its GenAI view unless they are marked as
model development, which our experiments are).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from competition.errors import CompetitionError
from competition.interfaces.subprocesses import stop_group

STARTUP_SECONDS = 120


def serve_ui(organizers: bool, host: str, port: int, say: Callable[..., Any],
             competition: str | None = None) -> int:
    """Run the UI until interrupted; returns the server's exit code."""
    from competition.tracking.config import load_config
    from competition.tracking.runs import Tracker

    config = load_config()
    audience = "organizers" if organizers else "participants"
    uri = config.uri(audience)
    if uri is None:
        raise CompetitionError("no organizers' tracking store is configured (mlflow.yaml)")
    if uri.startswith(("http://", "https://")):
        say(f"the tracking store is a server already: open {uri}")
        return 0
    tracker = Tracker(config, audience)
    page = tracker.runs_page(competition)
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
               "--host", host, "--port", str(port), "--workers", "1"]
    if config.artifact_location:
        command += ["--default-artifact-root", config.artifact_location]
    command += ["--uvicorn-opts", "--log-level warning"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    say(f"starting the MLflow UI on {uri}...")
    with tempfile.TemporaryFile() as server_log:
        process = subprocess.Popen(command, env=env, start_new_session=True,
                                   stdout=server_log, stderr=subprocess.STDOUT)
        # SIGTERM unwinds like Ctrl-C (waiting on the server inside a signal handler could
        # deadlock on the wait that the handler interrupted).
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            base = f"http://{host}:{port}"
            if _wait_until_answering(f"{base}/health", process):
                say(f"MLflow UI: {base}/{page} (Ctrl-C stops it)")
            code = process.wait()
        except KeyboardInterrupt:
            code = 0
        finally:
            stop_group(process)
        if code:
            server_log.seek(0)
            tail = server_log.read().decode(errors="replace")[-2000:]
            say(f"the MLflow server stopped (exit code {code}):\n{tail}")
    return code


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _wait_until_answering(url: str, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False
