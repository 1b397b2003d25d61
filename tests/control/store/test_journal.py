"""The write-behind journal, driven directly: compaction, urgent-first order, no going back."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from infernet.control.store import Store
from infernet.control.store.journal import SMALL_BATCH
from infernet.control.store.schema import balances

OPEN = ("queued", "assigned", "running")


@pytest.fixture
async def store(tmp_path):
    s = await Store.open(f"sqlite:///{tmp_path / 'journal.db'}")
    yield s
    await s.close()


class Statements:
    """Every statement the engine runs, grouped by transaction."""

    def __init__(self, store: Store) -> None:
        self.txns: list[list[str]] = [[]]
        engine = store.engine.sync_engine
        sa.event.listen(engine, "before_cursor_execute", lambda conn, cur, stmt, params, ctx, many: self.txns[-1].append(" ".join(stmt.split()[:3])))
        sa.event.listen(engine, "commit", lambda conn: self.txns.append([]))

    @property
    def flat(self) -> list[str]:
        return [s for t in self.txns for s in t]


def job(job_id: str, **kw) -> dict:
    return {"id": job_id, "key_id": "k", "kind": "chat", "model": "m", "status": "queued", "body": {}, **kw}


async def test_a_job_inserted_and_finished_in_one_window_costs_one_insert(store):
    log = Statements(store)
    jobs = store.jobs
    jobs.queue_insert(**job("j1"))
    claimed = jobs.queue_transition("j1", ("queued",), "assigned", node_id="n1", attempts=1)
    running = jobs.queue_transition("j1", ("assigned",), "running")
    finished = jobs.queue_finish("j1", OPEN, "completed", [(1, "token", {"text": "hi"}), (2, "done", {})], output="hi", completion_tokens=1)
    assert await asyncio.gather(claimed, running, finished) == [True, True, True]
    assert [s for s in log.flat if s.startswith(("INSERT", "UPDATE"))] == ["INSERT INTO jobs", "INSERT INTO job_events"]
    row = await jobs.get("j1")
    assert (row["status"], row["node_id"], row["attempts"], row["output"]) == ("completed", "n1", 1, "hi")
    assert await jobs.events_after("j1", 0) == [(1, "token", {"text": "hi"}), (2, "done", {})]


async def test_a_folded_update_that_does_not_apply_says_so(store):
    store.jobs.queue_insert(**job("j1"))
    wrong = store.jobs.queue_transition("j1", ("running",), "completed")  # the row is queued, not running
    assert await wrong is False
    assert (await store.jobs.get("j1"))["status"] == "queued"


async def test_updates_of_a_written_job_fold_into_one_statement(store):
    await store.jobs.create(**job("j1"))
    await store.jobs.create(**job("j2", status="running"))
    log = Statements(store)
    claimed = store.jobs.queue_transition("j1", ("queued",), "assigned", node_id="n1", attempts=1)
    running = store.jobs.queue_transition("j1", ("assigned",), "running")
    # j2 is not queued: its claim does not apply, and the update that rides in it neither,
    # though alone it would have (`running` is what it allows).
    stale = store.jobs.queue_transition("j2", ("queued",), "assigned", node_id="n2")
    after = store.jobs.queue_transition("j2", ("assigned", "running"), "queued", node_id=None)
    assert await asyncio.gather(claimed, running, stale, after) == [True, True, False, False]
    assert [s for s in log.flat if s.startswith("UPDATE")] == ["UPDATE jobs SET"] * 2
    assert ((await store.jobs.get("j1"))["status"], (await store.jobs.get("j2"))["status"]) == ("running", "running")


async def test_a_late_write_never_moves_a_job_backwards(store):
    await store.jobs.create(**job("j1"))
    done = store.jobs.queue_finish("j1", OPEN, "completed", [(1, "done", {})])
    back = store.jobs.queue_transition("j1", ("assigned", "running"), "queued", node_id=None)
    again = store.jobs.queue_finish("j1", OPEN, "failed", [(2, "error", {})], error="late")
    assert await asyncio.gather(done, back, again) == [True, False, False]
    row = await store.jobs.get("j1")
    assert row["status"] == "completed" and row["error"] is None
    assert [e[0] for e in await store.jobs.events_after("j1", 0)] == [1]  # the late events are not written


async def test_an_urgent_claim_commits_ahead_of_the_bulk_with_its_own_earlier_writes(store):
    log = Statements(store)
    jobs = store.jobs
    for i in range(SMALL_BATCH + 3):
        jobs.queue_insert(**job(f"bulk{i}"))
    jobs.queue_insert(**job("claim"))
    claim = jobs.queue_transition("claim", ("queued",), "assigned", urgent=True, node_id="n1")
    assert await claim is True
    await store.journal.drain()
    txns = [t for t in log.txns if any("jobs" in s for s in t)]
    assert len(txns) == 2 and txns[0] == ["INSERT INTO jobs"], txns  # the claim first, alone; the bulk after it
    assert (await jobs.get("claim"))["status"] == "assigned"
    assert [(await jobs.get(f"bulk{i}"))["status"] for i in range(SMALL_BATCH + 3)] == ["queued"] * (SMALL_BATCH + 3)


async def test_a_claim_in_a_small_batch_commits_with_it_in_one_transaction(store):
    """A request's own writes (its job, its escrow hold, its claim) are one commit, not two."""
    log = Statements(store)
    store.jobs.queue_insert(**job("j"))
    store.journal.submit(lambda tx: tx.execute(sa.select(1)))  # a ledger movement queued with it
    assert await store.jobs.queue_transition("j", ("queued",), "assigned", urgent=True, node_id="n1") is True
    await store.journal.drain()
    assert len([t for t in log.txns if t]) == 1, log.txns


async def test_ledger_movements_keep_their_place_in_line(store):
    order: list[str] = []

    def call(name: str):
        async def fn(conn):
            order.append(name)
            await conn.execute(sa.insert(balances).values(account=name, balance=0))
            return name

        return fn

    store.jobs.queue_insert(**job("j1"))
    first = store.journal.submit(call("settle"))
    urgent = store.journal.submit(call("hold"), urgent=True)  # a hold must see the settlement before it
    assert await asyncio.gather(first, urgent) == ["settle", "hold"]
    assert order == ["settle", "hold"]


async def test_flush_waits_for_what_was_queued(store):
    store.jobs.queue_insert(**job("j1"))
    await store.journal.flush()
    assert await store.jobs.get("j1") is not None
