"""A throwaway PostgreSQL server on loopback for the store tests.

Uses `COMPETITION_TEST_POSTGRES_URL` when set; otherwise starts the installed server
(Debian's `postgresql`, which `.ci/run` installs) in a temporary directory, as the `postgres`
user when running as root. Tests are skipped, with the reason, where no server is installed.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest


def _bindir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self):
        self.url = os.environ.get("COMPETITION_TEST_POSTGRES_URL")
        self.process_dir = None
        if self.url:
            return
        bindir = _bindir()
        if bindir is None:
            message = "PostgreSQL is not installed (.ci/run installs Debian's postgresql)"
            if os.environ.get("COMPETITION_REQUIRE_POSTGRES"):
                pytest.fail(message)
            pytest.skip(message)
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="pgtest-"))
        self.port = _free_port()
        as_user = []
        if os.geteuid() == 0:  # the server refuses to run as root
            shutil.chown(self.dir, "postgres", "postgres")
            as_user = ["runuser", "-u", "postgres", "--"]
        self.as_user = as_user
        data = self.dir / "data"
        subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust",
                        "-U", "postgres", "--no-sync"], check=True, capture_output=True)
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l",
                        str(self.dir / "log"), "-o",
                        f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} "
                        "-c fsync=off -c max_connections=200", "start"],
                       check=True, capture_output=True)
        self.process_dir = data
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def new_database(self, migrated: bool = True) -> str:
        """A fresh database for one test, its store made at the schema's head revision as
        `competition prepare` makes one (`migrated=False`: empty); its URL."""
        from sqlalchemy import create_engine, text

        from competition.board.store import migrations

        name = "t" + uuid.uuid4().hex[:12]
        admin = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = self.url.rsplit("/", 1)[0] + "/" + name
        if migrated:
            migrations.upgrade(url)
        return url

    def stop(self) -> None:
        if self.process_dir is not None:
            subprocess.run([*self.as_user, str(self.bindir / "pg_ctl"), "-D",
                            str(self.process_dir), "-m", "immediate", "stop"],
                           capture_output=True)
            shutil.rmtree(self.dir, ignore_errors=True)
