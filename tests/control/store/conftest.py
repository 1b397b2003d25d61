"""Store tests run against the embedded store (SQLite) and the cluster's (PostgreSQL)."""

from __future__ import annotations

import os
import secrets

import pytest

PG = os.environ.get("INFERNET_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    import asyncpg

    try:
        admin = await asyncpg.connect(PG.replace("postgresql://", "postgres://"), timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG}: {exc} (the cluster's store is not tested)")
    name = "infernet_t_" + secrets.token_hex(6)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
