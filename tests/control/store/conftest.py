"""Store tests run against the embedded store (SQLite) and the cluster's (PostgreSQL)."""

from __future__ import annotations

import pytest

from tests.control.conftest import fresh_pg_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    async with fresh_pg_database() as url:
        yield url
