"""Pieces the portal benchmarks share: a `competition serve` subprocess, the CLI, rules."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def module_of(code: Path) -> str:
    """How the `competition` command of the code at `code` is run with `python -m`."""
    return "competition.cli" if (code / "competition" / "cli.py").exists() else "competition"


def cli(python_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """The `competition` command of the code at `python_path`."""
    done = subprocess.run([sys.executable, "-m", module_of(python_path), *args],
                          cwd=python_path,
                          env={**os.environ, **(env or {}), "PYTHONPATH": str(python_path)},
                          capture_output=True, text=True, check=True, timeout=600)
    return done.stdout


def set_rules(root: Path, **rules: int) -> None:
    import yaml

    doc = yaml.safe_load((root / "competition.yaml").read_text())
    doc["rules"].update(rules)
    (root / "competition.yaml").write_text(yaml.safe_dump(doc))


class Server:
    """`competition serve DIR... [extra]` on a free port, until `/ready` answers 200."""

    def __init__(self, code: Path, roots: Path | list[Path], env: dict[str, str], *extra: str,
                 ready: str = "/leaderboard"):
        self.port = free_port()
        dirs = [str(r) for r in (roots if isinstance(roots, list) else [roots])]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module_of(code), "serve", *dirs, "--port", str(self.port),
             *extra], cwd=code, env={**os.environ, **env, "PYTHONPATH": str(code)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + ready, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
            if self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"{module_of(code)} serve did not answer")

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
