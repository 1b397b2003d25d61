"""The real services a cluster uses, for the tests that need them: a fresh PostgreSQL
database and a clean Redis namespace per test. Each skips loudly when its service is absent."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator

import pytest

PG = os.environ.get("INFERNET_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("INFERNET_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def pg_url():
    """A fresh database per test, dropped afterwards, so parallel runs never share state."""
    async with fresh_pg_database() as url:
        yield url


@contextlib.asynccontextmanager
async def fresh_pg_database() -> AsyncIterator[str]:
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


@pytest.fixture
def redis_url():
    """Redis, with a key prefix of its own per test (the bus namespaces every key). Synchronous,
    so a parametrized fixture can ask for it only when its case needs Redis."""
    import redis

    client = redis.Redis.from_url(REDIS, socket_timeout=3)
    try:
        client.ping()
    except (OSError, redis.RedisError) as exc:
        pytest.skip(f"Redis not reachable at {REDIS}: {exc} (the cluster's bus is not tested)")
    finally:
        client.close()
    return f"{REDIS}#infernet-t-{secrets.token_hex(4)}"
