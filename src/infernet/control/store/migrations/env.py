"""Alembic's entry point for infernet's store. Always run through `store/migrate.py`, which
hands over the connection: there is no alembic.ini and no URL here."""

from __future__ import annotations

from alembic import context

from infernet.control.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
