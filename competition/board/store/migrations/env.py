"""Alembic's environment: migrations run on the connection `upgrade` hands over, inside its
transaction (see competition.board.store.migrations)."""

from __future__ import annotations

from alembic import context

from competition.board.store.migrations import VERSION_TABLE
from competition.board.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                  version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
