"""Rule edits (issue 28): the rule_changes table, the history of the rules and description
as organizers changed them through the harness.

Revision ID: 0004
Revises: 0003

Nothing else changes: a store upgraded to 0004 has an empty history (edits made by hand in
competition.yaml before, or since, are not in it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rule_changes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("changed_at", sa.DateTime, nullable=False),
        sa.Column("who", sa.String(200), nullable=False),
        sa.Column("field", sa.String(100), nullable=False),
        sa.Column("old_value", sa.Text),
        sa.Column("new_value", sa.Text),
    )


def downgrade() -> None:
    # The history goes with the table; the rules in force (competition.yaml) stay as edited.
    op.drop_table("rule_changes")
