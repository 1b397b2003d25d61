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


OPEN = ("queued", "assigned", "running")


class JobRepo:
    """`owner`: this replica's id. Its rows carry it with a lease (`lease_s`), renewed while it
    runs them; every write it queues applies only while it still owns the row, so a replica
    that lost its lease (partitioned, or thought dead) can no longer change a job another
    replica took over."""

    def __init__(self, engine: Any, journal: Journal, owner: str | None = None, lease_s: float = 10.0) -> None:
        self._engine = engine
        self._journal = journal
        self.owner = owner
        self.lease_s = lease_s

    def _owned(self, row: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        values = {"attempts": 0, "created_at": now, "updated_at": now, **row}
        if self.owner is not None:
            values.update(owner=self.owner, lease_until=now + self.lease_s)
        return values

    async def create(self, **row: Any) -> dict[str, Any] | None:
        """Insert a job; with an idempotency key already used by this API key, return that job instead."""
        values = self._owned(row)
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

    async def transition(self, job_id: str, allowed: tuple[str, ...], status: str, *, owner: str | None = None, **fields: Any) -> bool:
        """Atomically move a job from one of `allowed` to `status` (and, with `owner`, only
        while that replica owns it); False if it was not there."""
        now = time.time()
        if status in TERMINAL:
            fields.setdefault("finished_at", now)
        cond = [jobs.c.id == job_id, jobs.c.status.in_(allowed)]
        if owner is not None:
            cond.append(jobs.c.owner == owner)
        async with self._engine.begin() as conn:
            res = await conn.execute(jobs.update().where(*cond).values(status=status, updated_at=now, **fields))
        return res.rowcount == 1

    async def finish(self, job_id: str, allowed: tuple[str, ...], status: str, events: list[StoredEvent], **fields: Any) -> bool:
        """Terminal transition and the job's event log in one transaction (only while this
        replica owns the job, when it has an id)."""
        now = time.time()
        cond = [jobs.c.id == job_id, jobs.c.status.in_(allowed)]
        if self.owner is not None:
            cond.append(jobs.c.owner == self.owner)
        async with self._engine.begin() as conn:
            res = await conn.execute(jobs.update().where(*cond).values(status=status, updated_at=now, finished_at=now, **fields))
            if res.rowcount != 1:
                return False
            if events:
                await conn.execute(job_events.insert(), [{"job_id": job_id, "seq": s, "type": t, "data": d} for s, t, d in events])
        return True

    # -- the same writes, queued on the journal (the request path does not wait) -----------

    def queue_insert(self, *, urgent: bool = False, **row: Any) -> asyncio.Future[bool]:
        """`urgent`: the caller answers only once the row is committed (commit without the window)."""
        return self._journal.submit(Op("insert", row["id"], (), self._owned(row)), urgent=urgent)

    def queue_transition(self, job_id: str, allowed: tuple[str, ...], status: str, *, urgent: bool = False, **fields: Any) -> asyncio.Future[bool]:
        """`urgent`: someone awaits the answer on the request path; commit without the window."""
        now = time.time()
        if status in TERMINAL:
            fields.setdefault("finished_at", now)
        return self._journal.submit(Op("update", job_id, allowed, {"status": status, "updated_at": now, **fields}, owner=self.owner), urgent=urgent)

    def queue_finish(self, job_id: str, allowed: tuple[str, ...], status: str, events: list[StoredEvent], *, urgent: bool = False, **fields: Any) -> asyncio.Future[bool]:
        now = time.time()
        values = {"status": status, "updated_at": now, "finished_at": now, **fields}
        return self._journal.submit(Op("update", job_id, allowed, values, list(events), owner=self.owner), urgent=urgent)

    def queue_delivered(self, job_id: str) -> asyncio.Future[bool]:
        """Output reached a follower who may re-attach elsewhere: after this the job is never
        retried out of sight, not even by the replica that takes it over."""
        return self._journal.submit(Op("update", job_id, OPEN, {"delivered": True}, owner=self.owner), urgent=True)

    # -- leases ----------------------------------------------------------------------------

    async def renew(self) -> int:
        """Extend the lease of every open job this replica owns: one statement, any number of
        jobs. On PostgreSQL a row another transaction holds (this replica's own journal batch,
        mid-commit) is skipped, not waited for: the renewal must never stall behind a batch
        (a lease that runs out hands a living replica's job to another), nor deadlock with
        one by locking the rows in another order; the next round, a few seconds on, renews it."""
        mine = sa.and_(jobs.c.owner == self.owner, jobs.c.status.in_(OPEN))
        async with self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                free = sa.select(jobs.c.id).where(mine).order_by(jobs.c.id).with_for_update(skip_locked=True).scalar_subquery()
                stmt = jobs.update().where(jobs.c.id.in_(free))
            else:
                stmt = jobs.update().where(mine)
            res = await conn.execute(stmt.values(lease_until=time.time() + self.lease_s))
        return res.rowcount

    async def expired(self, limit: int = 100, *, all_open: bool = False) -> list[dict[str, Any]]:
        """Open jobs whose owner's lease ran out (with `all_open`: every open job, for a
        control plane that knows it is alone on its database)."""
        q = sa.select(jobs).where(jobs.c.status.in_(OPEN)).order_by(jobs.c.created_at).limit(limit)
        if not all_open:
            q = q.where(sa.or_(jobs.c.lease_until < time.time(), jobs.c.lease_until.is_(None)))
        async with self._engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(q)).mappings().all()]

    async def take_over(self, job_id: str, *, force: bool = False) -> bool:
        """Become the owner of a job whose lease expired; False when another replica renewed
        it or took it first."""
        now = time.time()
        cond = [jobs.c.id == job_id, jobs.c.status.in_(OPEN)]
        if not force:
            cond.append(sa.or_(jobs.c.lease_until < now, jobs.c.lease_until.is_(None)))
        async with self._engine.begin() as conn:
            res = await conn.execute(jobs.update().where(*cond).values(owner=self.owner, lease_until=now + self.lease_s, updated_at=now))
        return res.rowcount == 1

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
