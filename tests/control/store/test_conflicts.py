"""Two replicas' transactions that lock the same rows in opposite orders deadlock; PostgreSQL
aborts one. Its writes must go again, not fail (a settlement lost that way left a completed
job without its receipt and its money held), and the lease renewal must not wait behind a
row another transaction holds."""

from __future__ import annotations

import asyncio
import time

import sqlalchemy as sa

from infernet.control.store import Store
from infernet.control.store.schema import jobs


async def test_two_replicas_journal_batches_that_deadlock_both_commit(pg_url):
    a = await Store.open(pg_url, owner="r-a")
    b = await Store.open(pg_url, migrate=False, owner="r-b")
    try:
        async with a.engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO balances (account, balance) VALUES ('x', 0), ('y', 0)"))
        holding = {"x": asyncio.Event(), "y": asyncio.Event()}

        def locking(first: str, then: str):
            async def fn(tx) -> str:
                await tx.execute(sa.text(f"UPDATE balances SET balance = balance + 1 WHERE account = '{first}'"))
                holding[first].set()
                await asyncio.wait_for(holding[then].wait(), 10)  # both hold their first row: a deadlock
                await tx.execute(sa.text(f"UPDATE balances SET balance = balance + 1 WHERE account = '{then}'"))
                return first + then
            return fn

        done = await asyncio.wait_for(asyncio.gather(a.journal.submit(locking("x", "y")), b.journal.submit(locking("y", "x"))), 30)
        assert done == ["xy", "yx"]
        async with a.engine.connect() as conn:
            assert dict((await conn.execute(sa.text("SELECT account, balance FROM balances"))).all()) == {"x": 2, "y": 2}
    finally:
        await a.close()
        await b.close()


async def test_renewing_leases_skips_a_row_another_transaction_holds(pg_url):
    store = await Store.open(pg_url, owner="r-a")
    try:
        store.jobs.lease_s = 60.0
        now = time.time()
        for job_id in ("j1", "j2"):
            await store.jobs.create(id=job_id, key_id="k", kind="chat", model="m", status="running", body={})
        async with store.engine.begin() as conn:
            await conn.execute(jobs.update().values(lease_until=now))
        async with store.engine.connect() as locker:
            await locker.execute(sa.text("BEGIN"))
            await locker.execute(sa.text("SELECT 1 FROM jobs WHERE id = 'j1' FOR UPDATE"))  # a batch of this replica's, mid-commit
            renewed = await asyncio.wait_for(store.jobs.renew(), 5)  # it must not wait for that batch
            await locker.execute(sa.text("ROLLBACK"))
        assert renewed == 1
        async with store.engine.connect() as conn:
            leases = dict((await conn.execute(sa.select(jobs.c.id, jobs.c.lease_until))).all())
        assert leases["j2"] > now + 30 and leases["j1"] == now  # j1 waits for the next round
        assert await store.jobs.renew() == 2
    finally:
        await store.close()


async def test_two_replicas_moving_money_for_two_clients_in_opposite_orders_never_deadlock(pg_url, caplog):
    from infernet.control.money.ledger import Ledger

    a = await Store.open(pg_url, owner="r-a")
    b = await Store.open(pg_url, migrate=False, owner="r-b")
    try:
        books = Ledger(a.engine)
        for key in ("ka", "kb"):
            await books.credit(key, 1_000_000)
        await books.hold("old-a", "ka", 100)
        await books.hold("old-b", "kb", 100)

        def batch(ledger: Ledger, hold_for: str, release: str):
            async def fn(tx) -> None:
                # A batch's hold locks its client's balance as it checks it; the release the
                # batch carries too touches the other client's, written when it commits.
                await ledger.hold_in(tx, "new-" + hold_for, hold_for, 10)
                await asyncio.sleep(0.3)
                await ledger.release_in(tx, release)
            return fn

        caplog.set_level("INFO", logger="infernet.store")
        await asyncio.wait_for(asyncio.gather(
            a.journal.submit(batch(Ledger(a.engine), "ka", "old-b")), b.journal.submit(batch(Ledger(b.engine), "kb", "old-a")),
        ), 30)
        assert not [r for r in caplog.records if "conflicted" in r.getMessage()]  # it never came to a deadlock
        assert (await books.client_view("ka"))["held"] == 10 and (await books.client_view("kb"))["held"] == 10
        assert await books.check() == []
    finally:
        await a.close()
        await b.close()
