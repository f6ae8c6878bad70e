"""Tables of the submission store (SQLAlchemy Core; SQLite or any SQL server)."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
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
)

metadata = MetaData()

teams = Table(
    "teams", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", DateTime, nullable=False),
    Column("token_sha256", String(64), unique=True),  # the team's access token, hashed
    # A baseline (a `competition run` or ensemble of the organizers): on the board, marked;
    # in the grades, left out.
    Column("baseline", Boolean, nullable=False, server_default=false()),
)

# Other hashed credentials, e.g. the organizer token.
credentials = Table(
    "credentials", metadata,
    Column("name", String(50), primary_key=True),
    Column("token_sha256", String(64), nullable=False),
)

members = Table(
    "members", metadata,
    Column("team_id", ForeignKey("teams.id"), primary_key=True),
    Column("name", String(200), primary_key=True),
)

# status: pending (being scored), scored, invalid (validator's message), failed (scorer error or
# interrupted; retryable), duplicate (same file as an earlier one of the team; not re-scored).
submissions = Table(
    "submissions", metadata,
    Column("id", Integer, primary_key=True),
    Column("team_id", ForeignKey("teams.id"), nullable=False),
    Column("submitted_at", DateTime, nullable=False),
    Column("file_name", String(500), nullable=False),
    Column("file_sha256", String(64), nullable=False),
    Column("file_path", String(300), nullable=False),
    Column("message", Text),
    Column("status", String(16), nullable=False),
    Column("counted", Boolean, nullable=False),  # towards the daily limit
    Column("error", Text),
    Column("public_score", Float),
    Column("private_score", Float),
    Column("scorer_version", String(100)),
    Column("solution_sha256", String(64)),
    Column("scored_at", DateTime),
    Column("owner_pid", Integer),  # the submitting process, which records the outcome
    Column("scorer_pid", Integer),  # its scoring child
    Column("scorer_host", String(255)),
    Column("duplicate_of", ForeignKey("submissions.id")),
)
Index("ix_submissions_team_time", submissions.c.team_id, submissions.c.submitted_at)
Index("ix_submissions_status", submissions.c.status)
Index("ix_submissions_team_sha", submissions.c.team_id, submissions.c.file_sha256)

# One row per test image/slice/specimen: the values the task aggregates (bootstrap input).
item_scores = Table(
    "item_scores", metadata,
    Column("submission_id", ForeignKey("submissions.id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("item", String(300), nullable=False),
    Column("usage", String(10)),
    Column("item_values", Text, nullable=False),  # JSON list of floats
)

selections = Table(
    "selections", metadata,
    Column("team_id", ForeignKey("teams.id"), primary_key=True),
    Column("submission_id", ForeignKey("submissions.id"), primary_key=True),
    Column("selected_at", DateTime, nullable=False),
)

# Every score a submission ever had, with the scorer version and solution hash behind it.
score_history = Table(
    "score_history", metadata,
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
