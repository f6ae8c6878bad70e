"""Schema versions of the submission store, with Alembic.

The revisions are in `versions/` (revision 0001: the whole schema when versions began). They
are applied once, by `upgrade`: `competition migrate DIRECTORY`, `competition prepare` (a new
store is made at the head revision) and `competition serve` at start call it; nothing else
changes a store's schema. Everything that opens a store (a Board, so every command, portal
reload and scoring job) only `check`s its revision, with one query, and refuses a store at
another revision with a StoreVersionError that names the command to run.

A store made before schema versions (its tables, no version table) is brought up to
revision 0001 as stores were kept up to date then (missing tables, columns and indexes
added: `baseline.bring_up`), stamped 0001, then upgraded like any other.

A new revision: a file `versions/vNNNN_what.py` with `revision = "NNNN"` and
`down_revision` the previous head, its tables changed in `competition.board.store.schema`
alike (tests/test_migrations.py compares a migrated store with the schema), and HEAD below.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.exc import DBAPIError

from competition.board.store import db
from competition.errors import StoreVersionError

log = logging.getLogger(__name__)

HEAD = "0005"  # the revision this code needs (tests check that it is the scripts' head)
BASELINE = "0001"  # what a store made before schema versions is stamped once brought up
HERE = Path(__file__).resolve().parent
# Not Alembic's default `alembic_version`: MLflow keeps its own schema revision there, and
# one PostgreSQL database may hold both stores (docs/deploy.md).
VERSION_TABLE = "competition_schema_version"


def upgrade(url: str) -> tuple[str | None, str]:
    """Bring the store at `url` to HEAD (creating it where it is empty), in one transaction
    that concurrent upgrades of the same store wait for. Returns (the revision before, None
    for a new store or one made before schema versions; the revision after). Upgrading a
    store at HEAD changes nothing; a store migrated by a newer version is refused (a
    StoreVersionError), never downgraded."""
    engine = db.make_engine(url)
    try:
        with db.write(engine) as conn:
            _serialise(conn)
            before = current(conn)
            if before is not None and not _known(before):
                raise StoreVersionError(_refusal(engine, [before], None))
            if before is None and _made_before_versions(conn):
                from competition.board.store.migrations import baseline

                log.info("store made before schema versions: brought up to %s", BASELINE)
                baseline.bring_up(conn)
                _alembic(conn, "stamp", BASELINE)
            if before != HEAD:
                _alembic(conn, "upgrade", "head")
            after = current(conn)
    finally:
        engine.dispose()
    assert after is not None
    return before, after


def check(engine: Engine, directory: Path | str | None = None) -> None:
    """Refuse a store whose schema is not at HEAD (one query): a StoreVersionError naming
    its revision, HEAD and the command that migrates it (`directory`: the competition's)."""
    try:
        with db.read(engine) as conn:
            found: list[str] = list(conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}")
                         .scalars())
    except DBAPIError:
        with db.read(engine) as conn:
            if inspect(conn).has_table(VERSION_TABLE):
                raise  # not a missing table: the store cannot be read
        found = []
    if found == [HEAD]:
        return
    raise StoreVersionError(_refusal(engine, found, directory))


def current(conn: Connection) -> str | None:
    """The store's revision (None: empty, or made before schema versions)."""
    from alembic.runtime.migration import MigrationContext

    revision: str | None = MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
    return revision


def _refusal(engine: Engine, found: list[str], directory: Path | str | None) -> str:
    where = engine.url.render_as_string(hide_password=True)
    command = f"`competition migrate {directory if directory is not None else 'DIRECTORY'}`"
    if not found:
        return (f"the submission store {where} has no schema revision (it is new, or was "
                f"made before schema versions); this version of the harness needs revision "
                f"{HEAD}: run {command}")
    revision = ", ".join(found)
    if any(not _known(r) for r in found):
        return (f"the submission store {where} is at schema revision {revision}, which this "
                f"version of the harness does not know (it needs {HEAD}): the store was "
                "migrated by a newer version; upgrade biomed-competition")
    return (f"the submission store {where} is at schema revision {revision}; this version "
            f"of the harness needs revision {HEAD}: run {command}")


def _known(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    try:
        return ScriptDirectory(str(HERE)).get_revision(revision) is not None
    except (CommandError, RevisionError):
        return False


def _alembic(conn: Connection, command: str, revision: str) -> None:
    """Run an Alembic command (upgrade, stamp) on `conn`, inside its transaction."""
    from alembic import command as commands
    from alembic.config import Config

    config = Config(attributes={"connection": conn})
    config.set_main_option("script_location", str(HERE))
    getattr(commands, command)(config, revision)


def _made_before_versions(conn: Connection) -> bool:
    """Tables of the store, and no version table: made before schema versions."""
    tables = set(inspect(conn).get_table_names())
    return "submissions" in tables or "teams" in tables


def _serialise(conn: Connection) -> None:
    """Make concurrent upgrades of one store wait for each other: SQLite's write lock is held
    already (BEGIN IMMEDIATE); PostgreSQL takes an advisory lock for the transaction."""
    if conn.dialect.name == "postgresql":
        key = int(hashlib.sha256(b"competition migrate").hexdigest()[:15], 16)
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({key})")
