"""The whole schema as it was when schema versions began (migrations/baseline.py).

Revision ID: 0001
Revises: none
"""

from __future__ import annotations

from alembic import op

from competition.board.store.migrations import baseline

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    baseline.metadata().create_all(op.get_bind())


def downgrade() -> None:
    baseline.metadata().drop_all(op.get_bind())
