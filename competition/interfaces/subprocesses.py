"""Child servers (the MLflow UI): started in a session of their own, stopped as a group."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a process started with start_new_session=True and everything it started
    (uvicorn workers), so that none outlives its caller."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
