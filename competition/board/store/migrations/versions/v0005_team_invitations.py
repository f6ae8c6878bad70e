"""Team forming (issue 28): the team_invitations table, the codes students join or merge with.

Revision ID: 0005
Revises: 0004 (the organizers' rule_changes; neither touches the other's tables)

Only a code's SHA-256 is kept. Nothing existing changes: a store upgraded to 0005 works as
before, with no invitations until a student makes one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "team_invitations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("team_id", sa.Integer, sa.ForeignKey("teams.id"), nullable=False),
        sa.Column("code_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("created_by", sa.Integer, sa.ForeignKey("accounts.id")),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("revoked_at", sa.DateTime),
        sa.Column("used_at", sa.DateTime),
        sa.Column("used_by", sa.Integer, sa.ForeignKey("accounts.id")),
    )
    op.create_index("ix_team_invitations_team", "team_invitations", ["team_id"])


def downgrade() -> None:
    # Open codes stop working with the table; the teams they formed stay as they are.
    op.drop_index("ix_team_invitations_team", table_name="team_invitations")
    op.drop_table("team_invitations")
