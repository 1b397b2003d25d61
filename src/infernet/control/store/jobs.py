"""Job rows and their event logs.

Every transition is one conditional UPDATE (`... WHERE status IN (...)`), so two replicas
or two racing tasks can never both claim or both finish the same job. The `queue_*` writes
ride the journal: the request path does not wait for them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from infernet.control.store.journal import Journal, Op
from infernet.control.store.schema import TERMINAL, job_events, jobs

StoredEvent = tuple[int, str, dict[str, Any]]


class JobRepo:
    def __init__(self, engine: Any, journal: Journal) -> None:
        self._engine = engine
        self._journal = journal

    async def create(self, **row: Any) -> dict[str, Any] | None:
        """Insert a job; with an idempotency key already used by this API key, return that job instead."""
        now = time.time()
        values = {"attempts": 0, "created_at": now, "updated_at": now, **row}
        try:
            async with self._engine.begin() as conn:
                await conn.execute(jobs.insert().values(**values))
        except IntegrityError:
            if row.get("idempotency_key"):
                return await self.by_idempotency(row["key_id"], row["idempotency_key"])
            raise
        return None

    async def by_idempotency(self, key_id: str, idem: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(jobs).where(jobs.c.key_id == key_id, jobs.c.idempotency_key == idem))).mappings().first()
        return dict(row) if row else None

    async def transition(self, job_id: str, allowed: tuple[str, ...], status: str, **fields: Any) -> bool:
        """Atomically move a job from one of `allowed` to `status`; False if it was not there."""
        now = time.time()
        if status in TERMINAL:
            fields.setdefault("finished_at", now)
        async with self._engine.begin() as conn:
            res = await conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.status.in_(allowed)).values(status=status, updated_at=now, **fields))
        return res.rowcount == 1

    async def finish(self, job_id: str, allowed: tuple[str, ...], status: str, events: list[StoredEvent], **fields: Any) -> bool:
        """Terminal transition and the job's event log in one transaction."""
        now = time.time()
        async with self._engine.begin() as conn:
            res = await conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.status.in_(allowed)).values(status=status, updated_at=now, finished_at=now, **fields))
            if res.rowcount != 1:
                return False
            if events:
                await conn.execute(job_events.insert(), [{"job_id": job_id, "seq": s, "type": t, "data": d} for s, t, d in events])
        return True

    # -- the same writes, queued on the journal (the request path does not wait) -----------

    def queue_insert(self, **row: Any) -> asyncio.Future[bool]:
        now = time.time()
        return self._journal.submit(Op("insert", row["id"], (), {"attempts": 0, "created_at": now, "updated_at": now, **row}))

    def queue_transition(self, job_id: str, allowed: tuple[str, ...], status: str, *, urgent: bool = False, **fields: Any) -> asyncio.Future[bool]:
        """`urgent`: someone awaits the answer on the request path; commit without the window."""
        now = time.time()
        if status in TERMINAL:
            fields.setdefault("finished_at", now)
        return self._journal.submit(Op("update", job_id, allowed, {"status": status, "updated_at": now, **fields}), urgent=urgent)

    def queue_finish(self, job_id: str, allowed: tuple[str, ...], status: str, events: list[StoredEvent], *, urgent: bool = False, **fields: Any) -> asyncio.Future[bool]:
        now = time.time()
        values = {"status": status, "updated_at": now, "finished_at": now, **fields}
        return self._journal.submit(Op("update", job_id, allowed, values, list(events)), urgent=urgent)

    # -- reads ----------------------------------------------------------------------------

    async def get(self, job_id: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(jobs).where(jobs.c.id == job_id))).mappings().first()
        return dict(row) if row else None

    async def list(
        self, key_id: str | None = None, limit: int = 50, *,
        status: str | None = None, model: str | None = None, node_id: str | None = None, before: float | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first; `key_id` None: every key's. `before`: created earlier (the next page)."""
        q = sa.select(jobs).order_by(jobs.c.created_at.desc()).limit(limit)
        for column, value in ((jobs.c.key_id, key_id), (jobs.c.status, status), (jobs.c.model, model), (jobs.c.node_id, node_id)):
            if value is not None:
                q = q.where(column == value)
        if before is not None:
            q = q.where(jobs.c.created_at < before)
        async with self._engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(q)).mappings().all()]

    async def unfinished(self) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            q = sa.select(jobs).where(jobs.c.status.not_in(TERMINAL))
            return [dict(r) for r in (await conn.execute(q)).mappings().all()]

    async def events_after(self, job_id: str, after: int, limit: int | None = None) -> list[StoredEvent]:
        async with self._engine.connect() as conn:
            q = sa.select(job_events).where(job_events.c.job_id == job_id, job_events.c.seq > after).order_by(job_events.c.seq).limit(limit)
            return [(r.seq, r.type, r.data) for r in (await conn.execute(q)).all()]
