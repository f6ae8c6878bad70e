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
    text,
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
    # The board's rules (issue 16): SHA-256 of the name folded for comparison (NFKC, case,
    # spacing, look-alike letters; competition.board.teams.name_key). Unique, so "Owls" and
    # "ｏwls" cannot both exist; filled for stores made before it by Teams when a board opens.
    Column("name_key", String(64)),
)
Index("ux_teams_name_key", teams.c.name_key, unique=True)

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

# People (issue 28): one account per student, each in one team, with a token of its own
# (hashed; NULL once revoked) that acts as the team. A student is known by the student id
# and/or the email (lower-cased) of the roster; names may repeat.
accounts = Table(
    "accounts", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("email", String(320), unique=True),
    Column("student_id", String(100), unique=True),
    Column("team_id", ForeignKey("teams.id"), nullable=False),
    Column("token_sha256", String(64), unique=True),
    Column("created_at", DateTime, nullable=False),
)
Index("ix_accounts_team", accounts.c.team_id)

# Team forming (issue 28): a code a student of the team made for others to join it (one
# student) or merge into it (a whole team). Only the code's SHA-256 is kept; a code admits
# once (used_at), until it expires or its team revokes it.
team_invitations = Table(
    "team_invitations", metadata,
    Column("id", Integer, primary_key=True),
    Column("team_id", ForeignKey("teams.id"), nullable=False),
    Column("code_sha256", String(64), nullable=False, unique=True),
    Column("created_by", ForeignKey("accounts.id")),
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Column("revoked_at", DateTime),
    Column("used_at", DateTime),
    Column("used_by", ForeignKey("accounts.id")),
)
Index("ix_team_invitations_team", team_invitations.c.team_id)

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
    # The board's rules (issue 16): the daily limit in force when it was made (retrying or
    # rescoring never counts it past that on its own UTC day; NULL in older stores: the limit
    # in force now), and when its content-addressed copy was removed (an upload that ended
    # invalid, its file shared by no kept submission; the row and its error stay).
    Column("day_limit", Integer),
    Column("file_deleted_at", DateTime),
    # Scoring jobs (the portal's queue): the current claim on the job, its holder (a serve
    # process), until when the claim holds unless renewed, and how often it was claimed.
    Column("claim_token", String(32)),
    Column("claimed_by", String(300)),
    Column("lease_until", DateTime),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    # A scored result not yet logged to MLflow (set with the result, cleared once logged):
    # what a job that died between the two, or an unreachable server, left to do.
    Column("tracking_pending", Boolean, nullable=False, server_default=false()),
)
Index("ix_submissions_team_time", submissions.c.team_id, submissions.c.submitted_at)
Index("ix_submissions_status", submissions.c.status)
Index("ix_submissions_team_sha", submissions.c.team_id, submissions.c.file_sha256)
Index("ix_submissions_file", submissions.c.file_path)

# The board's rules (issue 16): every upload a team made, whatever became of it (scored,
# invalid, failed, duplicate, or refused by the daily limit: submission_id NULL). The hourly
# upload limit counts these rows.
uploads = Table(
    "uploads", metadata,
    Column("id", Integer, primary_key=True),
    Column("team_id", ForeignKey("teams.id"), nullable=False),
    Column("uploaded_at", DateTime, nullable=False),
    Column("submission_id", ForeignKey("submissions.id")),
)
Index("ix_uploads_team_time", uploads.c.team_id, uploads.c.uploaded_at)

# One row per test image/slice/specimen: the values the task aggregates (bootstrap input).
item_scores = Table(
    "item_scores", metadata,
    Column("submission_id", ForeignKey("submissions.id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("item", String(300), nullable=False),
    Column("usage", String(10)),
    Column("item_values", Text, nullable=False),  # JSON list of floats
)

# What logging a scored result to MLflow needs beyond its submission's row (issue 31): a JSON
# object with the whole hidden split's score, the detail fields of the public split and of the
# whole, and the item rows. Written with the result while its logging is owed, removed once
# logged: logging owed by a job that died, or by an unreachable server, never scores again.
tracking_payloads = Table(
    "tracking_payloads", metadata,
    Column("submission_id", ForeignKey("submissions.id"), primary_key=True),
    Column("payload", Text, nullable=False),
)

# A code submission's run (issue 32): what the participant's entry used and printed, once it
# has run (its row replaced when it runs again). The output is the team's alone.
code_runs = Table(
    "code_runs", metadata,
    Column("submission_id", ForeignKey("submissions.id"), primary_key=True),
    Column("wall_seconds", Float, nullable=False),
    Column("cpu_seconds", Float, nullable=False),
    Column("peak_memory_mb", Float, nullable=False),
    Column("exit_code", Integer),
    Column("cause", String(50)),  # the limit or failure that ended it; NULL: it ran through
    Column("stdout_tail", Text, nullable=False),
    Column("stderr_tail", Text, nullable=False),
    Column("output_path", String(300)),  # the file it wrote, under the competition's root
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

# --- web portal sessions (issue 16, web layer) ----------------------------------------------
# A signed-in browser: the cookie holds a random id, the store only its SHA-256. A session is
# valid until it expires or is revoked (logout), and only while the token it was opened with
# is still the team's (or organizer's) token, or a student's token while the student is in the
# session's team: issuing a new token, or moving the student, ends the old sessions.
sessions = Table(
    "sessions", metadata,
    Column("id_sha256", String(64), primary_key=True),
    Column("role", String(16), nullable=False),  # "team" or "organizer"
    Column("team_id", ForeignKey("teams.id")),
    Column("credential_sha256", String(64), nullable=False),  # the token signed in with
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Column("revoked_at", DateTime),
)
Index("ix_sessions_credential", sessions.c.credential_sha256)

# Rule edits (issue 28): every change an organizer made to the rules or the description
# through the harness (the portal's pages and API, `competition rules --set`), one row per
# field. The values are JSON text: the rule's value as competition.yaml holds it (null:
# unset), or for the description its SHA-256 and length (see competition.board.rule_edits).
# Public: participants see the history beside the rules in force.
rule_changes = Table(
    "rule_changes", metadata,
    Column("id", Integer, primary_key=True),
    Column("changed_at", DateTime, nullable=False),  # UTC
    Column("who", String(200), nullable=False),  # "organizer (page)", "cli:alice", ...
    Column("field", String(100), nullable=False),
    Column("old_value", Text),
    Column("new_value", Text),
)
