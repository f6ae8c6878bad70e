"""Revision 0001, frozen: the whole schema as it was when schema versions began (the tables of
competition.board.store.schema at that time; see there what each column means). Revision 0001
creates it; a store made before schema versions is brought up to it (`bring_up`) and stamped
0001 before later revisions run. Never edit it: a change of schema is a new revision."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
    inspect,
    text,
)
from sqlalchemy.schema import CreateIndex


def metadata() -> MetaData:
    """The tables of revision 0001 (new objects at each call)."""
    meta = MetaData()
    teams = Table(
        "teams", meta,
        Column("id", Integer, primary_key=True),
        Column("name", String(200), nullable=False, unique=True),
        Column("created_at", DateTime, nullable=False),
        Column("token_sha256", String(64), unique=True),
        Column("baseline", Boolean, nullable=False, server_default=false()),
        Column("name_key", String(64)),
    )
    Index("ux_teams_name_key", teams.c.name_key, unique=True)
    Table(
        "credentials", meta,
        Column("name", String(50), primary_key=True),
        Column("token_sha256", String(64), nullable=False),
    )
    Table(
        "members", meta,
        Column("team_id", ForeignKey("teams.id"), primary_key=True),
        Column("name", String(200), primary_key=True),
    )
    submissions = Table(
        "submissions", meta,
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
        Column("duplicate_of", ForeignKey("submissions.id")),
        Column("day_limit", Integer),
        Column("file_deleted_at", DateTime),
        Column("claim_token", String(32)),
        Column("claimed_by", String(300)),
        Column("lease_until", DateTime),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("tracking_pending", Boolean, nullable=False, server_default=false()),
    )
    Index("ix_submissions_team_time", submissions.c.team_id, submissions.c.submitted_at)
    Index("ix_submissions_status", submissions.c.status)
    Index("ix_submissions_team_sha", submissions.c.team_id, submissions.c.file_sha256)
    Index("ix_submissions_file", submissions.c.file_path)
    uploads = Table(
        "uploads", meta,
        Column("id", Integer, primary_key=True),
        Column("team_id", ForeignKey("teams.id"), nullable=False),
        Column("uploaded_at", DateTime, nullable=False),
        Column("submission_id", ForeignKey("submissions.id")),
    )
    Index("ix_uploads_team_time", uploads.c.team_id, uploads.c.uploaded_at)
    Table(
        "item_scores", meta,
        Column("submission_id", ForeignKey("submissions.id"), primary_key=True),
        Column("position", Integer, primary_key=True),
        Column("item", String(300), nullable=False),
        Column("usage", String(10)),
        Column("item_values", Text, nullable=False),
    )
    Table(
        "tracking_payloads", meta,
        Column("submission_id", ForeignKey("submissions.id"), primary_key=True),
        Column("payload", Text, nullable=False),
    )
    Table(
        "selections", meta,
        Column("team_id", ForeignKey("teams.id"), primary_key=True),
        Column("submission_id", ForeignKey("submissions.id"), primary_key=True),
        Column("selected_at", DateTime, nullable=False),
    )
    Table(
        "score_history", meta,
        Column("id", Integer, primary_key=True),
        Column("submission_id", ForeignKey("submissions.id"), nullable=False),
        Column("status", String(16), nullable=False),
        Column("public_score", Float),
        Column("private_score", Float),
        Column("scorer_version", String(100)),
        Column("solution_sha256", String(64)),
        Column("recorded_at", DateTime, nullable=False),
        Column("reason", String(50), nullable=False),
    )
    sessions = Table(
        "sessions", meta,
        Column("id_sha256", String(64), primary_key=True),
        Column("role", String(16), nullable=False),
        Column("team_id", ForeignKey("teams.id")),
        Column("credential_sha256", String(64), nullable=False),
        Column("created_at", DateTime, nullable=False),
        Column("expires_at", DateTime, nullable=False),
        Column("revoked_at", DateTime),
    )
    Index("ix_sessions_credential", sessions.c.credential_sha256)
    return meta


def bring_up(conn: Connection) -> None:
    """A store made before schema versions, brought to revision 0001 in the caller's
    transaction: missing tables created, and columns and indexes added since it was made
    added (each column with its default, so its rows keep working), as stores were kept up
    to date before there were versions."""
    meta = metadata()
    meta.create_all(conn)
    inspector = inspect(conn)
    for table in meta.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            kind = column.type.compile(dialect=conn.dialect)
            default = getattr(column.server_default, "arg", None)
            if default is not None and not isinstance(default, str):
                default = default.compile(dialect=conn.dialect)
            clause = f" NOT NULL DEFAULT {default}" if default is not None else ""
            conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} "
                                 f"{kind}{clause}")
        indexed = {ix["name"] for ix in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexed:
                conn.execute(CreateIndex(index, if_not_exists=True))
