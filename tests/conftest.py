"""Shared fixtures: prepared demo competitions, and the real data in ../shared/data."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest

from competition.board.board import migrate
from competition.board.prepared import PreparedCompetition
from competition.tasks.preparing import prepare

REPO = Path(__file__).resolve().parents[1]
# MLflow logging is on by default; tests that are not about it must not write an mlflow.db
# wherever they run (the tracking tests switch it on with their own stores).
os.environ["COMPETITION_TRACKING"] = "off"
SHARED_DATA = Path(os.environ.get("COMPETITION_SHARED_DATA", REPO.parent / "shared" / "data"))


def prepare_with_store(kind: str, out: Path, **options: Any) -> Path:
    """A prepared competition with its store made, as `competition prepare` leaves it."""
    path = prepare(kind, out, **options)
    migrate(PreparedCompetition.open(path))
    return path


def load_script(path: Path, name: str | None = None) -> Any:
    """A script that is not in a package (benchmarks/, an entry's tools) as a module."""
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shared(name: str) -> Path:
    """A real data set, or a skip that says where it was looked for."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data {path} not present (set COMPETITION_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def open3d():
    """open3d (the ALPACA baseline's registration), or a skip that names what is missing:
    its wheel loads only where Debian's libusb-1.0-0 is installed."""
    try:
        import open3d as o3d
    except ImportError as e:
        pytest.skip(f"open3d cannot load ({e}); install Debian's libusb-1.0-0 "
                    "(apt-get install libusb-1.0-0), as .ci/run does")
    return o3d


@pytest.fixture(scope="session")
def demo_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("demos")
    return {kind: prepare_with_store(kind, root / kind, seed=0)
            for kind in ("demo-nuclei", "demo-em", "demo-landmarks")}


@pytest.fixture(scope="session")
def real_dirs(tmp_path_factory) -> dict[str, Path]:
    """The three real competitions, prepared once per session with the default seed."""
    root = tmp_path_factory.mktemp("real")
    sources = {"dsb2018": "dsb2018", "isbi2012": "isbi2012", "mouse-landmarks": "mouse_skulls"}
    return {kind: prepare_with_store(kind, root / kind, source=shared(src), seed=0)
            for kind, src in sources.items()}


@pytest.fixture(scope="session")
def postgres_server():
    from tests.pg import Server

    server = Server()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A fresh store URL for each backend: the SQLite default, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return None  # the embedded default inside the competition directory
    return request.getfixturevalue("postgres_server").new_database()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on loopback with a SQLite backend and proxied artifacts."""
    from tests.mlflow_server import Server

    server = Server(tmp_path_factory.mktemp("mlflow-server"))
    yield server
    server.stop()
