"""`competition ui`: the MLflow UI on the configured tracking store, opened on the runs table.

The server runs in a process group of its own (it starts workers), stopped as a whole; MLflow's
GenAI job runners are not started. The address is printed once the server answers, pointing at
the caller's runs: the competition's, or with a team and team experiments that team's own
(MLflow 3 opens experiments on its GenAI view unless they are marked as model development,
which our experiments are).

Each store is served with its artifacts proxied from its own root (`--serve-artifacts`, the
participants' `artifact_location` or the organizers' `organizer_artifact_location`). With
`auth`, the participants' store is served by MLflow's basic-auth app, where a user sees no
experiment unless granted one (`default_permission = NO_PERMISSIONS`; team users come from
`competition tracking-users`) and only admins create experiments (see
competition.tracking.users); its users are kept in a database beside the store
(`mlflow.db` -> `mlflow-auth.db`).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from competition.errors import CompetitionError
from competition.interfaces.subprocesses import stop_group

if TYPE_CHECKING:
    from competition.tracking.config import CompetitionKey

STARTUP_SECONDS = 120


def server_command(uri: str, artifacts: str | None, host: str, port: int, *,
                   auth: bool = False) -> list[str]:
    """`mlflow server` on the store `uri`, its artifacts proxied from `artifacts`; with
    `auth`, behind the basic-auth app (see `auth_environment`)."""
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
               "--host", host, "--port", str(port), "--workers", "1"]
    if auth:
        command += ["--app-name", "basic-auth"]
    if artifacts:
        command += ["--serve-artifacts", "--artifacts-destination", artifacts]
    return command + ["--uvicorn-opts", "--log-level warning"]


def auth_environment(uri: str, folder: Path, user: str | None = None,
                     password: str | None = None) -> dict[str, str]:
    """The environment of a basic-auth server on the SQLite store `uri`: a configuration
    (written into `folder`) where users see nothing unless granted and only admins create
    experiments, users kept beside the store, the admin's credentials (default:
    MLFLOW_TRACKING_USERNAME/PASSWORD; MLflow creates that admin on the first start)."""
    from competition.tracking.locks import sqlite_file

    store = sqlite_file(uri)
    if store is None:
        raise CompetitionError(f"--auth serves a SQLite store; {uri} is not one")
    user = user or os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = password or os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if not user or not password:
        raise CompetitionError("--auth: set MLFLOW_TRACKING_USERNAME and "
                               "MLFLOW_TRACKING_PASSWORD to the admin's credentials")
    users = store.with_name(f"{store.stem}-auth{store.suffix}")
    path = folder / "basic_auth.ini"
    path.write_text("[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
                    f"database_uri = sqlite:///{users}\nadmin_username = {user}\n"
                    "authorization_function = "
                    "competition.tracking.users:authenticate_team_user\n")
    # The app's CSRF tokens are signed with this key: one per server start unless given.
    key = os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY") or secrets.token_hex(32)
    return {"MLFLOW_AUTH_CONFIG_PATH": str(path), "MLFLOW_AUTH_ADMIN_PASSWORD": password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": key}


def serve_ui(host: str, port: int, say: Callable[..., Any], *, organizers: bool = False,
             competition: CompetitionKey | None = None, team: str | None = None,
             auth: bool = False) -> int:
    """Run the UI until interrupted; returns the server's exit code."""
    from competition.tracking.config import load_config
    from competition.tracking.runs import Tracker, is_remote

    config = load_config()
    audience = "organizers" if organizers else "participants"
    uri = config.uri(audience)
    if uri is None:
        raise CompetitionError("no organizers' tracking store is configured (mlflow.yaml)")
    if organizers and (team or auth):
        raise CompetitionError("--organizers opens the organizers' own store: no --team or "
                               "--auth")
    tracker = Tracker(config, audience, team)
    if is_remote(uri):
        say(f"the tracking store is a server already: open {uri}/{_page(tracker, competition)}")
        return 0
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryFile() as server_log:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        if auth:
            env.update(auth_environment(uri, Path(folder)))
        command = server_command(uri, config.artifact_root(audience), host, port, auth=auth)
        say(f"starting the MLflow UI on {uri}...")
        process = subprocess.Popen(command, env=env, start_new_session=True,
                                   stdout=server_log, stderr=subprocess.STDOUT)
        # SIGTERM unwinds like Ctrl-C (waiting on the server inside a signal handler could
        # deadlock on the wait that the handler interrupted).
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            # While the server starts (seconds: it imports MLflow, twice), this process finds
            # the caller's runs page (a second or two: MLflow's client) instead of before.
            page = tracker.runs_page(competition)
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


def _page(tracker: Any, competition: CompetitionKey | None) -> str:
    """The caller's runs page on a server, read with the caller's credentials."""
    try:
        return str(tracker.runs_page(competition))
    except Exception:  # not allowed to list, or not answering: the server's start page
        return ""


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
