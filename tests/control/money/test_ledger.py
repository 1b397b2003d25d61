"""The books under thousands of random jobs, failures, cancellations and payouts.

Drives the ledger API directly, against a model of what every account must hold computed
in plain Python; both must agree to the micro-unit and `check()` must find nothing.
"""

from __future__ import annotations

import random
from collections import defaultdict

import pytest
import sqlalchemy as sa

from infernet.control.money import ledger as L
from infernet.control.money.ledger import (
    InsufficientFunds,
    Ledger,
    SignedReceipt,
    SpendLimitReached,
)
from infernet.control.store import Store
from infernet.control.store.schema import balances
from infernet.control.store.tx import begin
from infernet.protocol import keys, receipts

PLATFORM = keys.Identity.generate()
NODES = [keys.Identity.generate() for _ in range(4)]


def _receipt(job_id: str, key_id: str, node: keys.Identity, inp: int, out: int, rng: random.Random, metering: random.Random) -> SignedReceipt:
    terms = receipts.terms(
        job_id=job_id, node_pubkey=node.pubkey, platform_pubkey=PLATFORM.pubkey, client=key_id, model="m",
        input_rate=rng.choice([10_000, 1_234_567, 7_777_777]), output_rate=rng.choice([40_000, 4_938_271, 31_111_111]), fee_bps=rng.choice([0, 1500, 3333]), chain="base",
    )
    claim = receipts.complete(terms, inp, out, 1_700_000_000 + rng.randrange(10**6))
    # Sometimes the platform meters less than the node claims (an overclaim, or a cancel).
    m = metering
    billed_in, billed_out = (inp, out) if m.random() < 0.7 else (m.randrange(0, inp + 1), m.randrange(0, out + 1))
    settled = receipts.settlement(claim, input_tokens=billed_in, output_tokens=billed_out, delivered_tokens=m.randrange(0, billed_out + 1), metered="claimed", settled_at=claim["completed_at"])
    return SignedReceipt(claim, node.sign(receipts.digest(claim)), settled, PLATFORM.sign(receipts.digest(settled)))


async def run_random_books(store: Store, jobs: int, seed: int) -> None:
    rng = random.Random(seed)
    metering = random.Random(seed + 1)
    ledger = Ledger(store.engine)
    clients = []
    for i in range(6):
        rec, _ = await store.keys.create(f"c{i}", "admin" if i == 0 else "client")
        clients.append(rec.id)
    want: dict[str, int] = defaultdict(int)  # the model: what each account must hold
    held: dict[str, tuple[str, int]] = {}
    receipts_by_node: dict[str, list[int]] = defaultdict(list)
    for cid in clients[1:]:
        amount = rng.randrange(1, 3_000_000)
        await ledger.credit(cid, amount)
        want[L.client_account(cid)] += amount
        want[L.DEPOSITS] -= amount
    outcomes = defaultdict(int)
    for n in range(jobs):
        job_id = f"job-{n}"
        cid = rng.choice(clients)
        amount = rng.randrange(0, 400_000)
        spend_limit = rng.choice([None, None, None, rng.randrange(100_000, 5_000_000)])
        min_balance = rng.choice([0, 100_000])
        try:
            await ledger.hold(job_id, cid, amount, overdraft=cid == clients[0], min_balance=min_balance, spend_limit=spend_limit)
        except InsufficientFunds:
            assert cid != clients[0] and want[L.client_account(cid)] < max(amount, min_balance)
            outcomes["refused: funds"] += 1
            continue
        except SpendLimitReached:
            outcomes["refused: spend limit"] += 1
            continue
        want[L.client_account(cid)] -= amount
        want[L.ESCROW] += amount
        held[job_id] = (cid, amount)
        # Settle or release a random earlier job, so many holds overlap.
        while held and rng.random() < 0.6:
            jid = rng.choice(list(held))
            kcid, kamount = held.pop(jid)
            fate = rng.random()
            if fate < 0.55:  # completed, or a cancelled stream metered for what it delivered
                node = rng.choice(NODES)
                r = _receipt(jid, kcid, node, rng.randrange(0, 3000), rng.randrange(0, 3000), rng, metering)
                if r.settlement["price"] > kamount:
                    with pytest.raises(L.LedgerError):
                        await ledger.settle(jid, r)
                    assert await ledger.release(jid)
                    want[L.client_account(kcid)] += kamount
                    outcomes["over-hold receipt refused"] += 1
                else:
                    assert await ledger.settle(jid, r)
                    assert not await ledger.settle(jid, r) and not await ledger.release(jid)  # ends once
                    b = r.settlement
                    want[L.client_account(kcid)] += kamount - b["price"]
                    want[L.node_account(node.pubkey)] += b["value"]
                    want[L.FEES] += b["fee"]
                    receipts_by_node[node.pubkey].append(b["value"])
                    outcomes["settled"] += 1
            else:  # failed
                assert await ledger.release(jid)
                assert not await ledger.release(jid)
                want[L.client_account(kcid)] += kamount
                outcomes["released"] += 1
            want[L.ESCROW] -= kamount
        if rng.random() < 0.01:
            node = rng.choice(NODES)
            doc = await ledger.payout(node.pubkey, lambda rec: PLATFORM.sign(receipts.digest(rec)), chain="base", platform_pubkey=PLATFORM.pubkey)
            total = sum(receipts_by_node.pop(node.pubkey, []))
            if doc is None:
                assert total == 0 and want[L.node_account(node.pubkey)] == 0
            else:
                assert doc["payout"]["total"] == total and receipts.verify_payout(doc) == []
                want[L.node_account(node.pubkey)] -= total
                want[L.PAYOUTS] += total
                outcomes["payouts"] += 1
    for jid in list(held):  # the rest fail
        kcid, kamount = held.pop(jid)
        assert await ledger.release(jid)
        want[L.client_account(kcid)] += kamount
        want[L.ESCROW] -= kamount
    assert outcomes["settled"] > jobs // 10 and outcomes["released"] > jobs // 10 and outcomes["payouts"] >= jobs // 400, outcomes
    assert await ledger.check() == []
    async with store.engine.connect() as conn:
        stored = dict((await conn.execute(sa.select(balances.c.account, balances.c.balance))).all())
    assert {k: v for k, v in stored.items() if v} == {k: v for k, v in want.items() if v}
    assert sum(stored.values()) == 0


async def test_thousands_of_random_jobs_keep_the_books_exact(tmp_path):
    store = await Store.open(f"sqlite:///{tmp_path / 'books.db'}")
    try:
        await run_random_books(store, jobs=2000, seed=7)
    finally:
        await store.close()


async def test_check_finds_a_tampered_balance_and_an_unbalanced_transaction(tmp_path):
    store = await Store.open(f"sqlite:///{tmp_path / 'books.db'}")
    try:
        ledger = Ledger(store.engine)
        rec, _ = await store.keys.create("c")
        await ledger.credit(rec.id, 5_000)
        await ledger.hold("j1", rec.id, 1_000)
        assert await ledger.check() == []
        async with store.engine.begin() as conn:
            await conn.execute(balances.update().where(balances.c.account == L.client_account(rec.id)).values(balance=balances.c.balance + 1))
        problems = await ledger.check()
        assert any("balances sum to 1" in p for p in problems) and any(L.client_account(rec.id) in p for p in problems)
        with pytest.raises(L.LedgerError):
            async with begin(store.engine) as tx:
                ledger._post(tx, "bogus", None, [(L.ESCROW, 5), (L.FEES, -4)])
    finally:
        await store.close()


async def test_holds_refuse_overdraft_and_respect_the_minimum_balance(tmp_path):
    store = await Store.open(f"sqlite:///{tmp_path / 'books.db'}")
    try:
        ledger = Ledger(store.engine)
        rec, _ = await store.keys.create("c")
        await ledger.credit(rec.id, 1_500_000)
        with pytest.raises(InsufficientFunds) as exc:
            await ledger.hold("j1", rec.id, 1_500_001)
        assert (exc.value.balance, exc.value.needed) == (1_500_000, 1_500_001)
        await ledger.hold("j2", rec.id, 600_000, min_balance=1_000_000)
        with pytest.raises(InsufficientFunds):  # 900,000 left: under the 1.00 USDC minimum
            await ledger.hold("j3", rec.id, 1, min_balance=1_000_000)
        assert await ledger.client_view(rec.id) == {"available": 900_000, "held": 600_000, "spent": 0, "spent_24h": 0}
    finally:
        await store.close()


async def test_movements_batched_in_one_transaction_see_each_other_and_post_once(tmp_path):
    """The journal runs many movements in one transaction; their ledger rows go in at its
    end, yet a hold still sees the money a release just before it gave back."""
    store = await Store.open(f"sqlite:///{tmp_path / 'books.db'}")
    try:
        ledger = Ledger(store.engine)
        rec, _ = await store.keys.create("c")
        admin, _ = await store.keys.create("a", "admin")
        await ledger.credit(rec.id, 1_000)
        await ledger.hold("j1", rec.id, 600)
        statements: list[str] = []
        sa.event.listen(store.engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2].split()[2]) if a[2].startswith("INSERT") else None)
        j = store.journal
        released = j.submit(lambda tx: ledger.release_in(tx, "j1"))
        j2 = j.submit(lambda tx: ledger.hold_in(tx, "j2", rec.id, 900))  # needs j1's 600 back
        j3 = j.submit(lambda tx: ledger.hold_in(tx, "j3", rec.id, 200))  # 100 left: refused
        admin_holds = [j.submit(lambda tx, n=n: ledger.hold_in(tx, f"a{n}", admin.id, 10, overdraft=True)) for n in range(50)]
        await j.flush()
        assert await released is True and await j2 is None and isinstance(await j3, InsufficientFunds)
        assert [await h for h in admin_holds] == [None] * 50
        assert await ledger.client_view(rec.id) == {"available": 100, "held": 900, "spent": 0, "spent_24h": 0}
        assert await ledger.check() == []
        # Entries: once before j2's balance check, once before j3's, once at the end; not
        # once per movement.
        assert statements.count("ledger_entries") == 3 and statements.count("holds") == 51
    finally:
        await store.close()
