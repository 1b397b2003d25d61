"""Migrations: a new database, an old one made before migrations existed, and a cluster
replica that refuses a database behind its code."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from infernet.control.store import Store
from infernet.control.store.engine import open_engine
from infernet.control.store.migrate import SchemaOutdated, current, head, upgrade
from infernet.control.store.schema import metadata


def _diff(conn: sa.Connection) -> list:
    return compare_metadata(MigrationContext.configure(conn), metadata)


async def test_a_new_database_migrates_to_exactly_the_schema_the_code_uses(db_url):
    store = await Store.open(db_url)
    try:
        assert await current(store.engine) == head()
        async with store.engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await store.close()


async def test_a_replica_refuses_a_database_behind_it_and_migrate_fixes_it(db_url):
    engine = await open_engine(db_url)
    try:
        with pytest.raises(SchemaOutdated, match="control-plane migrate"):
            await Store.open(db_url, migrate=False)
        assert await upgrade(engine) == (None, head())
        assert await upgrade(engine) == (head(), head())  # idempotent
        store = await Store.open(db_url, migrate=False)
        await store.close()
    finally:
        await engine.dispose()


async def test_a_database_made_before_migrations_is_stamped_and_upgraded(db_url):
    """The landed release created its tables with `create_all`: receipts had no settlement,
    jobs no lease. Its data survives the upgrade."""
    engine = await open_engine(db_url)
    try:
        await upgrade(engine, "0001")  # the baseline is exactly that schema
        async with engine.begin() as conn:
            await conn.execute(sa.text("DROP TABLE alembic_version"))
            await conn.execute(sa.text("INSERT INTO jobs (id, key_id, kind, model, status, body, attempts, created_at, updated_at) VALUES ('j1', 'k', 'chat', 'm', 'completed', '{}', 1, 0, 0)"))
        assert await upgrade(engine) == (None, head())
        async with engine.connect() as conn:
            row = (await conn.execute(sa.text("SELECT status, origin, delivered, owner FROM jobs WHERE id = 'j1'"))).one()
        assert row.status == "completed" and row.origin == "openai" and not row.delivered and row.owner is None
    finally:
        await engine.dispose()
