"""Alembic environment: runs on the connection ``rtserve.registry.migrate`` hands over.

The registry never runs Alembic from a command line or an ``alembic.ini``; the caller already
holds a write-locked transaction, so concurrent openers migrate one after another.
"""

from __future__ import annotations

from alembic import context

from rtserve.registry.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
