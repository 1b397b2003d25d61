"""The write-behind journal: job writes and ledger movements, committed in order by one
writer task, many per transaction.

A job's owner (its driver task on this replica) is the only writer of its row, so the
request path need not wait for the database: it queues the write and carries on. Writes
wait up to `window_s` and are compacted: a job inserted and finished within the window
costs one INSERT of its final row (plus its events), not four statements. Every update is
conditional on the status it expects, so a late write can never move a job backwards; each
returned future says whether its write applied. An update that follows an unwritten update of
the same job folds into it likewise.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from infernet.control.store.schema import job_events, jobs
from infernet.control.store.tx import begin, retrying

log = logging.getLogger("infernet.store")


@functools.lru_cache(maxsize=64)
def _transition_stmt(allowed: tuple[str, ...], columns: tuple[str, ...], fenced: bool) -> Any:
    # Building a statement costs far more than running it; build each shape once.
    cond = [jobs.c.id == sa.bindparam("p_id"), jobs.c.status.in_(allowed)]
    if fenced:
        cond.append(jobs.c.owner == sa.bindparam("p_owner_"))
    return jobs.update().where(*cond).values({c: sa.bindparam("p_" + c) for c in columns})


def transition(job_id: str, allowed: tuple[str, ...], values: dict[str, Any], owner: str | None = None) -> tuple[Any, dict[str, Any]]:
    """A conditional UPDATE of one job (`... WHERE status IN allowed`, and with `owner` only
    while that replica still owns it), and its parameters."""
    stmt = _transition_stmt(allowed, tuple(sorted(values)), owner is not None)
    params = {"p_id": job_id, **{"p_" + k: v for k, v in values.items()}}
    if owner is not None:
        params["p_owner_"] = owner
    return stmt, params


@dataclass
class Op:
    kind: str  # "insert", "update", or "call" (any `fn(tx)`, e.g. a ledger movement; `store.tx.Tx`)
    job_id: str
    allowed: tuple[str, ...]
    values: dict[str, Any]
    events: list[tuple[int, str, dict]] | None = None
    # (future, whether it applied) — None: decided when the batch commits
    futures: list[tuple[asyncio.Future[Any], bool | None]] | None = None
    fn: Any = None
    urgent: bool = False
    owner: str | None = None  # an update applies only while this replica owns the job (its lease)


class Journal:
    """See the module's docstring."""

    def __init__(self, engine: Any, window_s: float = 0.025, max_batch: int = 512) -> None:
        self._engine = engine
        self._window_s = window_s
        self._max_batch = max_batch
        self._pending: list[Op] = []
        self._inserts: dict[str, Op] = {}  # unflushed inserts, by job id, for compaction
        self._updates: dict[str, Op] = {}  # each job's last unflushed update, likewise
        self._has_work = asyncio.Event()
        self._flush_now = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, op: Any, *, urgent: bool = False) -> asyncio.Future[Any]:
        """Queue a job write (`Op`) or any `fn(tx) -> result` to run in order with them."""
        if not isinstance(op, Op):
            op = Op("call", "", (), {}, fn=op)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        pending_insert = self._inserts.get(op.job_id) if op.kind == "update" else None
        earlier = self._updates.get(op.job_id) if op.kind == "update" and pending_insert is None else None
        if pending_insert is not None:
            # Fold the update into the row that has not been written yet.
            applies = pending_insert.values["status"] in op.allowed
            if applies:
                pending_insert.values.update(op.values)
                if op.events:
                    pending_insert.events = (pending_insert.events or []) + op.events
            pending_insert.futures = (pending_insert.futures or []) + [(fut, applies)]
            pending_insert.urgent |= urgent
        elif earlier is not None and earlier.owner == op.owner and earlier.values.get("status") in op.allowed:
            # An update that follows an unwritten one of the same job (a claim, then running)
            # rides in it: it applies if and only if that one does.
            earlier.values.update(op.values)
            if op.events:
                earlier.events = (earlier.events or []) + op.events
            earlier.futures = (earlier.futures or []) + [(fut, None)]
            earlier.urgent |= urgent
        else:
            op.futures = [(fut, None)]
            op.urgent = urgent
            self._pending.append(op)
            if op.kind == "insert":
                self._inserts[op.job_id] = op
            elif op.kind == "update":
                self._updates[op.job_id] = op
        self._idle.clear()
        self._has_work.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        if urgent or len(self._pending) >= self._max_batch:
            self._flush_now.set()
        return fut

    async def _run(self) -> None:
        while True:
            if not self._pending:
                self._idle.set()
                self._has_work.clear()
                await self._has_work.wait()
                continue
            try:
                await asyncio.wait_for(self._flush_now.wait(), self._window_s)
                # Group commit: whatever is ready to run now (other jobs ending at the same
                # moment) queues its writes first and shares this transaction.
                await asyncio.sleep(0)
            except TimeoutError:
                pass
            self._flush_now.clear()
            batch, self._pending, self._inserts, self._updates = self._pending, [], {}, {}
            for part in _urgent_first(batch):
                await self._commit(part)

    async def _commit(self, batch: list[Op]) -> None:
        try:
            results = await retrying(lambda: self._write(batch))
        except Exception as exc:
            if len(batch) == 1:
                log.exception("a journal write failed (job %s)", batch[0].job_id or "-")
                self._resolve(batch[0], exc=exc)
                return
            # One bad write must not take the others down with it: the batch rolled back,
            # so each write goes again in a transaction of its own, in order.
            log.warning("a batch of %d journal writes failed; committing them one by one", len(batch))
            for op in batch:
                await self._commit([op])
            return
        for op, result in zip(batch, results):
            self._resolve(op, result)

    @staticmethod
    def _resolve(op: Op, result: Any = None, *, exc: BaseException | None = None) -> None:
        for fut, applies in op.futures or ():
            if fut.done():
                continue
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result if op.kind == "call" else bool(result) and applies is not False)

    async def _write(self, batch: list[Op]) -> list[Any]:
        results: list[Any] = []
        async with begin(self._engine) as conn:
            inserts = [op.values for op in batch if op.kind == "insert"]
            if inserts:
                await conn.execute(jobs.insert(), _uniform(inserts))
            events = [{"job_id": op.job_id, "seq": s, "type": t, "data": d} for op in batch if op.kind == "insert" and op.events for s, t, d in op.events]
            for op in batch:
                if op.kind == "insert":
                    results.append(True)
                    continue
                if op.kind == "call":
                    results.append(await op.fn(conn))
                    continue
                stmt, params = transition(op.job_id, op.allowed, op.values, op.owner)
                ok = (await conn.execute(stmt, params)).rowcount == 1
                results.append(ok)
                if ok and op.events:
                    events += [{"job_id": op.job_id, "seq": s, "type": t, "data": d} for s, t, d in op.events]
            if events:
                await conn.execute(job_events.insert(), events)
        return results

    async def flush(self) -> None:
        """Commit everything queued so far, now (not whatever arrives meanwhile)."""
        futures = [f for op in self._pending for f, _ in op.futures or ()]
        if futures:
            self._flush_now.set()
            await asyncio.gather(*futures, return_exceptions=True)

    async def drain(self) -> None:
        """Wait until everything queued so far is committed."""
        if self._pending:
            self._flush_now.set()
        await self._idle.wait()


# A batch this small commits whole, urgent or not: splitting it would cost a request a second
# commit (its claim, then its escrow hold) to save a few statements' time.
SMALL_BATCH = 8


def _urgent_first(batch: list[Op]) -> list[list[Op]]:
    """Split a batch so that an awaited job write (a claim) commits in a small transaction of
    its own, ahead of a bulk of other writes, taking along every earlier write of the same job
    so that each job's writes keep their order. Ledger movements never jump the queue: a hold must see every
    settlement queued before it, or it could refuse money that is about to come back."""
    if len(batch) <= SMALL_BATCH or not any(op.urgent for op in batch) or any(op.urgent and op.kind == "call" for op in batch):
        return [batch]
    jobs_ = {op.job_id for op in batch if op.urgent}
    first = [op for op in batch if op.kind != "call" and op.job_id in jobs_]
    rest = [op for op in batch if op.kind == "call" or op.job_id not in jobs_]
    return [first, rest] if rest else [first]


def _uniform(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """executemany needs the same keys in every row."""
    keys = set().union(*rows)
    return [{k: r.get(k) for k in keys} for r in rows]
