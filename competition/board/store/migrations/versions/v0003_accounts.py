"""People (issue 28): the accounts table, one row per student with a token of its own.

Revision ID: 0003
Revises: 0002

Existing teams, their tokens and members are untouched: a store upgraded to 0003 works as
before, with no accounts until a roster is imported.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), unique=True),
        sa.Column("student_id", sa.String(100), unique=True),
        sa.Column("team_id", sa.Integer, sa.ForeignKey("teams.id"), nullable=False),
        sa.Column("token_sha256", sa.String(64), unique=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_accounts_team", "accounts", ["team_id"])


def downgrade() -> None:
    # The students' accounts go with the table (their teams, members and submissions stay);
    # their sessions end with them (a session of a student's token is live only while the
    # account is).
    op.drop_index("ix_accounts_team", table_name="accounts")
    op.drop_table("accounts")
