"""The node registry: every node that ever connected, with its last advertisement."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from infernet.control.store.schema import nodes


class NodeRepo:
    def __init__(self, engine: Any) -> None:
        self._engine = engine

    async def upsert(self, node_id: str, **fields: Any) -> None:
        now = time.time()
        async with self._engine.begin() as conn:
            res = await conn.execute(nodes.update().where(nodes.c.id == node_id).values(last_seen=now, **fields))
            if res.rowcount == 0:
                await conn.execute(nodes.insert().values(id=node_id, first_seen=now, last_seen=now, **fields))

    async def set_status(self, node_id: str, status: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(nodes.update().where(nodes.c.id == node_id).values(status=status, last_seen=time.time()))

    async def touch(self, seen: dict[str, float]) -> None:
        """Record when each node was last heard from (wall clock), in one batched UPDATE."""
        if not seen:
            return
        stmt = nodes.update().where(nodes.c.id == sa.bindparam("node")).values(last_seen=sa.bindparam("seen"))
        async with self._engine.begin() as conn:
            await conn.execute(stmt, [{"node": n, "seen": t} for n, t in seen.items()])

    async def list(self) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(nodes).order_by(nodes.c.first_seen))).mappings().all()
        return [dict(r) for r in rows]

    async def get(self, node_id: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(nodes).where(nodes.c.id == node_id))).mappings().first()
        return dict(row) if row else None
