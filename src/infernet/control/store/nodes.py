"""The node registry: every node that ever connected, with its last advertisement."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from infernet.control.store.engine import insert_for
from infernet.control.store.schema import nodes


class NodeRepo:
    def __init__(self, engine: Any) -> None:
        self._engine = engine

    async def upsert_many(self, rows: list[dict[str, Any]]) -> None:
        """Register many nodes in one statement: each row (`id` and the same columns in every
        row) is inserted, or updates the node's row but for when it was first seen."""
        if not rows:
            return
        now = time.time()
        values = [{**r, "first_seen": now, "last_seen": now} for r in rows]
        async with self._engine.begin() as conn:
            stmt = insert_for(conn.dialect.name)(nodes).values(values)
            update = {c: stmt.excluded[c] for c in values[0] if c not in ("id", "first_seen")}
            await conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=update))

    async def set_offline(self, node_ids: list[str]) -> None:
        """Mark nodes offline, in one statement."""
        if not node_ids:
            return
        async with self._engine.begin() as conn:
            await conn.execute(nodes.update().where(nodes.c.id.in_(node_ids)).values(status="offline", last_seen=time.time()))

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
