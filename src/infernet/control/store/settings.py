"""Operator settings shared by every replica (the price table), as JSON values."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from infernet.control.store.engine import upsert
from infernet.control.store.schema import settings


class SettingsRepo:
    def __init__(self, engine: Any) -> None:
        self._engine = engine

    async def get(self, name: str) -> Any:
        async with self._engine.connect() as conn:
            return (await conn.execute(sa.select(settings.c.value).where(settings.c.name == name))).scalar()

    async def put(self, name: str, value: Any) -> None:
        values = {"value": value, "updated_at": time.time()}
        async with self._engine.begin() as conn:
            await conn.execute(upsert(conn, settings, ["name"], {"name": name, **values}, values))
