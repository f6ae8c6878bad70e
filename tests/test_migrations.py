"""Schema versions of the store (issue 31): Alembic revisions applied once, by `competition
migrate` (and `prepare`, and `serve` at start); a Board only checks the revision and refuses a
store at another one, naming the command; stores made before schema versions are brought up."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    inspect,
    text,
)

from competition.board.board import Board
from competition.board.prepared import PreparedCompetition
from competition.board.store import db, migrations
from competition.board.store.migrations import baseline
from competition.board.store.schema import metadata
from competition.errors import StoreVersionError
from tests.test_bad_input import run_cli

DDL = re.compile(r"^\s*(CREATE|ALTER|DROP)\b", re.IGNORECASE)


def copy_comp(demo_dirs, tmp_path: Path) -> Path:
    return Path(shutil.copytree(demo_dirs["demo-nuclei"], tmp_path / "comp"))


def url_of(comp: Path, store_url: str | None) -> str:
    return store_url or db.store_url(comp)


@pytest.fixture
def statements():
    """Every SQL statement any engine runs while the test does."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    yield seen
    event.remove(Engine, "before_cursor_execute", record)


def old_store(url: str) -> None:
    """A store as an early version made it, before schema versions: no version table, no
    sessions or tracking payloads, submissions without the columns added since (limits,
    leases, tracking), teams without name keys; one team and one scored submission."""
    old = baseline.metadata()
    for name in ("submissions", "tracking_payloads", "sessions", "teams"):
        old.remove(old.tables[name])
    Table("teams", old,
          Column("id", Integer, primary_key=True),
          Column("name", String(200), nullable=False, unique=True),
          Column("created_at", DateTime, nullable=False),
          Column("token_sha256", String(64), unique=True))
    Table("submissions", old,
          Column("id", Integer, primary_key=True),
          Column("team_id", ForeignKey("teams.id"), nullable=False),
          Column("submitted_at", DateTime, nullable=False),
          Column("file_name", String(500), nullable=False),
          Column("file_sha256", String(64), nullable=False),
          Column("file_path", String(300), nullable=False),
          Column("message", Text),
          Column("status", String(16), nullable=False),
          Column("counted", Boolean, nullable=False),
          Column("error", Text),
          Column("public_score", Float),
          Column("private_score", Float),
          Column("scorer_version", String(100)),
          Column("solution_sha256", String(64)),
          Column("scored_at", DateTime),
          Column("owner_pid", Integer),
          Column("scorer_pid", Integer),
          Column("scorer_host", String(255)),
          Column("duplicate_of", ForeignKey("submissions.id")))
    engine = create_engine(url)
    now = datetime(2024, 1, 2, 3, 4, 5)
    with engine.begin() as conn:
        old.create_all(conn)
        [team_id] = conn.execute(old.tables["teams"].insert().values(
            name="owls", created_at=now)).inserted_primary_key
        conn.execute(old.tables["submissions"].insert().values(
            team_id=team_id, submitted_at=now, file_name="a.csv", file_sha256="0" * 64,
            file_path="store/files/00/a.csv", status="scored", counted=True,
            public_score=0.5, private_score=0.25))
    engine.dispose()


def drop_everything(url: str) -> None:
    """Empty the store (the SQLite file's tables, or the PostgreSQL database's)."""
    engine = create_engine(url)
    with engine.begin() as conn:
        reflected = MetaData()
        reflected.reflect(conn)
        reflected.drop_all(conn)
    engine.dispose()


def schema_differences(url: str) -> list:
    """What Alembic's autogenerate finds between the store and competition.board.store.schema
    (nothing, for a store at the head revision)."""
    engine = create_engine(url)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": migrations.VERSION_TABLE})
        found = compare_metadata(context, metadata)
    engine.dispose()
    return found


def test_head_is_the_revision_scripts_head():
    assert ScriptDirectory(str(migrations.HERE)).get_current_head() == migrations.HEAD


def test_head_is_0005_team_invitations_up_and_down(demo_dirs, tmp_path, store_url):
    """0005 (team forming, after 0004's rule_changes) adds team_invitations only: down to
    0003, the table goes and the teams and accounts stay; up again, the schema is the code's."""
    assert migrations.HEAD == "0005"
    comp = copy_comp(demo_dirs, tmp_path)
    url = url_of(comp, store_url)
    board = Board(PreparedCompetition.open(comp), url=store_url)
    board.teams.add("owls", ["ann"])
    board.engine.dispose()
    engine = create_engine(url)
    with engine.begin() as conn:
        migrations._alembic(conn, "downgrade", "0003")
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        assert migrations.current(conn) == "0003"
    assert "team_invitations" not in tables and {"teams", "accounts"} <= tables
    engine.dispose()
    assert migrations.upgrade(url) == ("0003", "0005")
    assert schema_differences(url) == []
    board = Board(PreparedCompetition.open(comp), url=store_url)
    assert [t["team"] for t in board.teams.overview()] == ["owls"]
    board.engine.dispose()


def test_a_board_on_a_store_at_head_runs_no_ddl(demo_dirs, tmp_path, store_url, statements):
    comp = copy_comp(demo_dirs, tmp_path)
    board = Board(PreparedCompetition.open(comp), url=store_url)
    board.teams.add("owls", ["ann"])
    assert board.submissions.all() == []
    board.engine.dispose()
    assert statements, "the listener saw nothing"
    assert [s for s in statements if DDL.match(s)] == []
    # The check is one query, on the version table.
    assert sum(migrations.VERSION_TABLE in s for s in statements) == 1


def test_a_new_store_is_at_head_with_the_schema_of_the_code(demo_dirs, tmp_path, store_url):
    comp = copy_comp(demo_dirs, tmp_path)
    url = url_of(comp, store_url)
    assert schema_differences(url) == []
    drop_everything(url)
    assert migrations.upgrade(url) == (None, migrations.HEAD)
    assert schema_differences(url) == []


def test_an_old_store_is_refused_then_migrated_by_the_command(demo_dirs, tmp_path, store_url,
                                                              monkeypatch, capsys):
    comp = copy_comp(demo_dirs, tmp_path)
    if store_url:
        monkeypatch.setenv("COMPETITION_STORE_URL", store_url)
    url = url_of(comp, store_url)
    drop_everything(url)
    old_store(url)

    with pytest.raises(StoreVersionError) as refused:
        Board(PreparedCompetition.open(comp))
    message = str(refused.value)
    assert f"`competition migrate {comp}`" in message
    assert "no schema revision" in message and f"needs revision {migrations.HEAD}" in message
    code, _, err = run_cli(["submissions", comp, "--team", "owls"], capsys)
    assert code == 2 and "competition migrate" in err and "Traceback" not in err

    code, out, err = run_cli(["migrate", comp], capsys)
    assert code == 0, err
    assert f"schema revision none -> {migrations.HEAD}" in out
    assert schema_differences(url) == []

    board = Board(PreparedCompetition.open(comp))
    [kept] = board.submissions.of_team("owls")  # the old rows are all there
    assert (kept.status, kept.public_score, kept.private_score) == ("scored", 0.5, 0.25)
    row = board.submissions.get(kept.id)
    assert (row["attempts"], row["tracking_pending"]) == (0, False)  # the new columns' defaults
    sample = comp / "public" / "sample_submission.csv"
    outcome = board.submissions.submit(sample, "owls", "after the migration")
    assert outcome.status == "scored" and outcome.id > kept.id
    board.engine.dispose()

    # (d) Migrating again changes nothing.
    code, out, err = run_cli(["migrate", comp], capsys)
    assert code == 0, err
    assert f"at schema revision {migrations.HEAD}; nothing to do" in out
    assert migrations.upgrade(url) == (migrations.HEAD, migrations.HEAD)
    assert len(Board(PreparedCompetition.open(comp)).submissions.all()) == 2


def test_a_store_of_a_newer_version_is_refused(demo_dirs, tmp_path, store_url):
    comp = copy_comp(demo_dirs, tmp_path)
    url = url_of(comp, store_url)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {migrations.VERSION_TABLE} SET version_num = 'ffff'"))
    engine.dispose()
    newer = "revision ffff, which this version of the harness does not know.*newer version"
    with pytest.raises(StoreVersionError, match=newer):
        Board(PreparedCompetition.open(comp), url=store_url)
    with pytest.raises(StoreVersionError, match=newer):  # never downgraded
        migrations.upgrade(url)


def test_concurrent_migrations_of_a_new_store_make_it_once(demo_dirs, tmp_path, store_url):
    comp = copy_comp(demo_dirs, tmp_path)
    url = url_of(comp, store_url)
    drop_everything(url)
    results, errors = [], []

    def migrate():
        try:
            results.append(migrations.upgrade(url))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(results, key=str) == sorted(
        [(None, migrations.HEAD)] + [(migrations.HEAD, migrations.HEAD)] * 2, key=str)
    engine = create_engine(url)
    tables = set(inspect(engine).get_table_names())
    assert tables == set(metadata.tables) | {migrations.VERSION_TABLE}
    engine.dispose()


def test_serve_migrates_an_old_store_at_start(demo_dirs, tmp_path):
    comp = copy_comp(demo_dirs, tmp_path)
    url = db.store_url(comp)
    drop_everything(url)
    old_store(url)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "competition", "serve", str(comp),
                             "--port", str(port), "--threads"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        board = None
        for _ in range(600):
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/leaderboard", timeout=1)
                if r.status_code == 200:
                    board = r.json()
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0].decode()
    assert board is not None, output
    assert [(e["team"], e["score"]) for e in board] == [("owls", 0.5)]
    assert f"schema revision none -> {migrations.HEAD}" in output


@pytest.mark.parametrize("mlflow_first", [True, False])
def test_one_database_holds_the_store_and_mlflow(demo_dirs, tmp_path, store_url, mlflow_first):
    """docs/deploy.md allows one PostgreSQL database for both stores: MLflow's schema revision
    (Alembic's default version table) and ours never meet, whichever is made first."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    comp = copy_comp(demo_dirs, tmp_path)
    url = url_of(comp, store_url)
    if mlflow_first:
        drop_everything(url)
        mlflow_store = SqlAlchemyStore(url, str(tmp_path / "artifacts"))
        assert migrations.upgrade(url) == (None, migrations.HEAD)
    else:
        mlflow_store = SqlAlchemyStore(url, str(tmp_path / "artifacts"))
        assert migrations.upgrade(url) == (migrations.HEAD, migrations.HEAD)
    experiment = mlflow_store.create_experiment("shared")
    assert mlflow_store.get_experiment(experiment).name == "shared"
    mlflow_store.engine.dispose()
    board = Board(PreparedCompetition.open(comp), url=store_url)
    board.teams.add("owls", ["ann"])
    assert [t["team"] for t in board.teams.overview()] == ["owls"]
    board.engine.dispose()


def test_a_store_at_0003_is_upgraded_to_0004_and_back(demo_dirs, tmp_path, store_url,
                                                      monkeypatch, capsys):
    """Revision 0004 adds rule_changes (the history of rule edits): a store at 0003 keeps
    its rows and gets an empty history; downgraded, the history goes and nothing else."""
    from competition.board import rule_edits

    comp = copy_comp(demo_dirs, tmp_path)
    if store_url:
        monkeypatch.setenv("COMPETITION_STORE_URL", store_url)
    url = url_of(comp, store_url)
    board = Board(PreparedCompetition.open(comp))
    token = board.teams.issue_token("owls")
    rule_edits.edit_rules(comp, board.engine, {"daily_limit": 4}, "test")
    board.engine.dispose()
    engine = create_engine(url)

    def alembic(command: str, revision: str) -> None:
        with engine.begin() as conn:
            migrations._alembic(conn, command, revision)

    alembic("downgrade", "0003")
    assert "rule_changes" not in set(inspect(engine).get_table_names())
    with pytest.raises(StoreVersionError, match="revision 0003.*competition migrate"):
        Board(PreparedCompetition.open(comp))
    code, out, err = run_cli(["migrate", comp], capsys)
    assert code == 0 and f"schema revision 0003 -> {migrations.HEAD}" in out, err
    assert schema_differences(url) == []
    board = Board(PreparedCompetition.open(comp))
    assert board.teams.who(token) == ("team", "owls")  # the rows of 0003 are kept
    assert rule_edits.history(board.engine) == []  # edits before 0004 were not recorded
    rule_edits.edit_rules(comp, board.engine, {"daily_limit": 5}, "test")
    assert [(h["field"], h["old"], h["new"]) for h in rule_edits.history(board.engine)] == [
        ("daily_limit", "4", "5")]
    board.engine.dispose()
    engine.dispose()
