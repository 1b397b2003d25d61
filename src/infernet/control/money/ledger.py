"""The books: double-entry rows in integer micro-USDC, shared by every replica through the store.

Accounts:
    external:deposits   money that came in (credits); negative by what was deposited
    client:<key id>     a client's available balance
    escrow              held for running jobs (one `holds` row per job says how much)
    node:<pubkey>       a node's earnings not yet paid out
    platform:fees       the platform's fees
    external:payouts    money claimed out by nodes

Every movement is one transaction whose entries sum to zero, written with the `balances`
update in the same database transaction. Holds are taken with a conditional UPDATE
(`... WHERE balance >= amount`), which also locks the client's row, so two replicas can never
spend the same money twice. Each hold ends exactly once (settled or released) by a
conditional UPDATE on its status. `check()` proves the books balance.
"""

from __future__ import annotations

import functools
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from infernet.control.bounds import MAX_MICRO
from infernet.control.store.engine import insert_for
from infernet.control.store.schema import (
    TERMINAL,
    api_keys,
    balances,
    holds,
    jobs,
    ledger_entries,
    payouts,
    receipts,
)
from infernet.control.store.tx import Tx, begin
from infernet.protocol import receipts as cpr

# Statements are built once per dialect and shape: building a SQLAlchemy construct costs far
# more than running it, and a job moves money twice.


@functools.lru_cache(maxsize=8)
def _balance_open(dialect: str) -> Any:
    return insert_for(dialect)(balances).on_conflict_do_nothing(index_elements=["account"])


@functools.lru_cache(maxsize=2)
def _take(overdraft: bool) -> Any:
    cond = balances.c.account == sa.bindparam("p_account")
    if not overdraft:
        cond = sa.and_(cond, balances.c.balance >= sa.bindparam("p_need"))
    return balances.update().where(cond).values(balance=balances.c.balance)


# A replica moves a job's money only while it owns the job, or nobody does (a request
# refused before its job existed): checked in the same statement that ends the hold.
_NOT_OURS = sa.exists().where(jobs.c.id == holds.c.job_id, jobs.c.owner.is_not(None), jobs.c.owner != sa.bindparam("p_owner"))


@functools.lru_cache(maxsize=4)
def _end_hold(fenced: bool, capped: bool) -> Any:
    """End a held hold, returning what it held; `capped`: only if the charge fits in it."""
    cond = [holds.c.job_id == sa.bindparam("p_job"), holds.c.status == "held"]
    if capped:
        cond.append(holds.c.amount >= sa.bindparam("p_charged"))
    if fenced:
        cond.append(~_NOT_OURS)
    return holds.update().where(*cond).values(
        status=sa.bindparam("p_status"), charged=sa.bindparam("p_charged"), settled_at=sa.bindparam("p_at"),
    ).returning(holds.c.key_id, holds.c.amount)


_HOLD = sa.select(holds.c.status, holds.c.amount).where(holds.c.job_id == sa.bindparam("p_job"))
_OWNER = sa.select(jobs.c.owner).where(jobs.c.id == sa.bindparam("p_job"))

DEPOSITS = "external:deposits"
PAYOUTS = "external:payouts"
ESCROW = "escrow"
FEES = "platform:fees"
DAY_S = 86_400.0
_BOOKS = sa.select(balances.c.balance).where(balances.c.account == ESCROW).with_for_update()


async def _lock_books(tx: Tx) -> None:
    """Take the escrow account's row before any other row a movement locks. Every hold,
    settlement and release moves money through escrow, so movements in concurrent
    transactions (two replicas' journal batches) now queue here instead of locking client
    balances in opposite orders: a hold locks its client's row when it checks the balance,
    long before the batch writes the other accounts, and two batches deadlocked every few
    seconds, each costing every replica a second (PostgreSQL's deadlock_timeout) stalled
    behind the rows it held. SQLite has one writer at a time and needs no lock."""
    if tx.books_locked or tx.dialect.name != "postgresql":
        return
    tx.books_locked = True
    await tx.execute(_BOOKS)


def client_account(key_id: str) -> str:
    return f"client:{key_id}"


def node_account(pubkey: str) -> str:
    return f"node:{pubkey}"


class LedgerError(Exception):
    pass


class BalanceCap(LedgerError):
    """A credit would take a balance past what the books hold (`bounds.MAX_MICRO`)."""


class InsufficientFunds(LedgerError):
    def __init__(self, balance: int, needed: int) -> None:
        super().__init__(f"balance {balance} < {needed}")
        self.balance = balance
        self.needed = needed


class SpendLimitReached(LedgerError):
    def __init__(self, spent: int, limit: int, needed: int) -> None:
        super().__init__(f"spent {spent} + {needed} > limit {limit}")
        self.spent = spent
        self.limit = limit
        self.needed = needed


@dataclass(frozen=True, slots=True)
class SignedReceipt:
    claim: dict[str, Any]  # what the node served, as it signed it
    node_signature: str
    settlement: dict[str, Any]  # what the platform metered and charged for it, as it signed it
    platform_signature: str

    def document(self) -> dict[str, Any]:
        """The receipt file: everything `infernet receipt verify` needs."""
        return {"receipt": self.claim, "node_signature": self.node_signature, "settlement": self.settlement, "platform_signature": self.platform_signature}


def _receipt_doc(row: Any) -> dict[str, Any]:
    claim = json.loads(row.body)
    if row.settlement is None:  # from before settlements: the platform countersigned the claim itself
        return {"receipt": claim, "node_signature": row.node_signature, "platform_signature": row.platform_signature}
    return SignedReceipt(claim, row.node_signature, json.loads(row.settlement), row.platform_signature).document()


class Ledger:
    def __init__(self, engine: Any) -> None:
        self.engine = engine  # the store's database; movements also ride its journal

    def _post(self, tx: Tx, kind: str, job_id: str | None, entries: list[tuple[str, int]]) -> None:
        if sum(a for _, a in entries) != 0:
            raise LedgerError(f"unbalanced {kind} transaction: {entries}")
        txn, now = "txn_" + secrets.token_hex(12), time.time()
        tx.post([{"txn": txn, "account": acct, "amount": amt, "kind": kind, "job_id": job_id, "created_at": now} for acct, amt in entries if amt])

    # -- movements ------------------------------------------------------------------------

    async def credit(self, key_id: str, amount: int) -> int:
        """Fund a client's balance (a payment gateway would call this); returns the new balance."""
        if amount <= 0:
            raise ValueError("a credit is a positive amount")
        async with begin(self.engine) as tx:
            self._post(tx, "credit", None, [(DEPOSITS, -amount), (client_account(key_id), amount)])
            await tx.flush()
            balance = await self._balance(tx, client_account(key_id))
            if balance > MAX_MICRO:  # raising rolls the credit back
                raise BalanceCap(f"this credit would take the balance past {cpr.usdc(MAX_MICRO)} USDC")
            return balance

    async def hold(self, job_id: str, key_id: str, amount: int, *, overdraft: bool = False, min_balance: int = 0, spend_limit: int | None = None, now: float | None = None) -> None:
        """Move a job's worst-case price from the client's balance into escrow, or raise."""
        async with begin(self.engine) as tx:
            refused = await self.hold_in(tx, job_id, key_id, amount, overdraft=overdraft, min_balance=min_balance, spend_limit=spend_limit, now=now)
        if refused is not None:
            raise refused

    async def settle(self, job_id: str, receipt: SignedReceipt) -> bool:
        """Charge the receipt's price from the job's hold, release the rest, pay node and fee.

        False when the hold was already ended; LedgerError when the price exceeds the hold.
        """
        async with begin(self.engine) as tx:
            outcome = await self.settle_in(tx, job_id, receipt)
        if outcome == "over hold":
            raise LedgerError(f"job {job_id} costs {receipt.settlement['price']}, more than was held")
        return outcome == "settled"

    async def release(self, job_id: str) -> bool:
        """Give a job's whole hold back to the client; False when it was already ended."""
        async with begin(self.engine) as tx:
            return await self.release_in(tx, job_id)

    # The same movements inside a caller's transaction (the store's journal batches them with
    # the job's own writes). They never raise for a business reason: a refusal is returned and
    # nothing is written, so one refused hold cannot roll back a batch of other jobs' writes.

    async def hold_in(self, tx: Tx, job_id: str, key_id: str, amount: int, *, overdraft: bool = False, min_balance: int = 0, spend_limit: int | None = None, now: float | None = None) -> LedgerError | None:
        if amount < 0:
            raise ValueError("a hold is not negative")
        await _lock_books(tx)
        now = time.time() if now is None else now
        acct = client_account(key_id)
        if not overdraft or spend_limit is not None:
            if tx.touches(acct):  # the balance check must see this transaction's own changes
                await tx.flush()
            if overdraft:
                await tx.execute(_balance_open(tx.dialect.name), {"account": acct, "balance": 0})
            # Also takes the row lock: the spend check below sees every earlier hold of this key.
            need = max(amount, min_balance)
            res = await tx.execute(_take(overdraft), {"p_account": acct, "p_need": need} if not overdraft else {"p_account": acct})
            if res.rowcount != 1 and need > 0:
                return InsufficientFunds(await self._balance(tx, acct), need)
            if spend_limit is not None:
                spent = await self._spent(tx, key_id, now)
                if spent + amount > spend_limit:
                    return SpendLimitReached(spent, spend_limit, amount)
        await tx.execute(holds.insert(), {"job_id": job_id, "key_id": key_id, "amount": amount, "status": "held", "charged": 0, "created_at": now})
        self._post(tx, "hold", job_id, [(acct, -amount), (ESCROW, amount)])
        return None

    async def settle_in(self, tx: Tx, job_id: str, receipt: SignedReceipt, *, owner: str | None = None) -> str:
        """'settled', 'ended' (no open hold), 'over hold' or 'not ours' (another replica owns
        the job; `owner`: this replica). Nothing is written unless settled. The receipt row
        is written with the money: money moves if and only if a countersigned receipt exists."""
        claim, body = receipt.claim, receipt.settlement
        await _lock_books(tx)
        row = await self._end(tx, job_id, "settled", body["price"], owner)
        if row is None:
            return await self._why_not(tx, job_id, owner, body["price"])
        await tx.execute(
            receipts.insert(),
            {
                "job_id": job_id, "node_pubkey": claim["node_pubkey"], "key_id": row.key_id, "price": body["price"], "fee": body["fee"], "value": body["value"],
                "completed_at": claim["completed_at"], "body": cpr.canonical(claim).decode(), "settlement": cpr.canonical(body).decode(),
                "node_signature": receipt.node_signature, "platform_signature": receipt.platform_signature,
            },
        )
        self._post(tx, "settle", job_id, [
            (ESCROW, -row.amount),
            (client_account(row.key_id), row.amount - body["price"]),
            (node_account(claim["node_pubkey"]), body["value"]),
            (FEES, body["fee"]),
        ])
        return "settled"

    async def release_in(self, tx: Tx, job_id: str, *, owner: str | None = None) -> bool:
        """Give the whole hold back; False when it was ended already or is not ours to end."""
        await _lock_books(tx)
        row = await self._end(tx, job_id, "released", 0, owner)
        if row is None:
            return False
        self._post(tx, "release", job_id, [(ESCROW, -row.amount), (client_account(row.key_id), row.amount)])
        return True

    @staticmethod
    async def _end(tx: Tx, job_id: str, status: str, charged: int, owner: str | None) -> Any:
        params = {"p_job": job_id, "p_status": status, "p_charged": charged, "p_at": time.time()}
        if owner is not None:
            params["p_owner"] = owner
        return (await tx.execute(_end_hold(owner is not None, status == "settled"), params)).first()

    @staticmethod
    async def _why_not(tx: Tx, job_id: str, owner: str | None, price: int) -> str:
        hold = (await tx.execute(_HOLD, {"p_job": job_id})).first()
        if hold is None or hold.status != "held":
            return "ended"
        if owner is not None and (who := (await tx.execute(_OWNER, {"p_job": job_id})).scalar()) is not None and who != owner:
            return "not ours"
        return "over hold" if price > hold.amount else "ended"

    async def stale_holds(self, orphaned_before: float) -> list[str]:
        """Jobs whose hold is still held though the job ended, or though no job row came and
        the hold is older than `orphaned_before`. One query: reading every open hold and
        then its job, one by one, cost a replica under load a statement per job in flight
        every round."""
        q = (
            sa.select(holds.c.job_id)
            .select_from(holds.outerjoin(jobs, jobs.c.id == holds.c.job_id))
            .where(holds.c.status == "held", sa.or_(jobs.c.status.in_(TERMINAL), sa.and_(jobs.c.id.is_(None), holds.c.created_at < orphaned_before)))
        )
        async with self.engine.connect() as conn:
            return list((await conn.execute(q)).scalars())

    async def payout(self, node_pubkey: str, sign: Callable[[dict[str, Any]], str], *, chain: str, platform_pubkey: str, limit: int = 1000) -> dict[str, Any] | None:
        """Claim the node's unpaid receipts (oldest first, up to `limit`) into one signed record."""
        async with begin(self.engine) as tx:
            rows = (
                await tx.execute(
                    sa.select(receipts)
                    .where(receipts.c.node_pubkey == node_pubkey, receipts.c.payout_id.is_(None))
                    .order_by(receipts.c.completed_at, receipts.c.job_id)
                    .limit(limit)
                    .with_for_update()
                )
            ).all()
            if not rows:
                return None
            payout_id = "po_" + secrets.token_hex(12)
            docs = [_receipt_doc(r) for r in rows]
            record = cpr.payout_record(
                payout_id=payout_id, node_pubkey=node_pubkey, platform_pubkey=platform_pubkey, chain=chain,
                receipts=[cpr.paid_part(d) for d in docs], created_at=int(time.time()),
            )
            sig = sign(record)
            ids = [r.job_id for r in rows]
            res = await tx.execute(receipts.update().where(receipts.c.job_id.in_(ids), receipts.c.payout_id.is_(None)).values(payout_id=payout_id))
            if res.rowcount != len(ids):
                raise LedgerError("another payout claimed some of these receipts; retry")
            await tx.execute(
                payouts.insert().values(id=payout_id, node_pubkey=node_pubkey, total=record["total"], receipt_count=len(ids), record=cpr.canonical(record).decode(), platform_signature=sig, created_at=time.time())
            )
            self._post(tx, "payout", None, [(node_account(node_pubkey), -record["total"]), (PAYOUTS, record["total"])])
        return {"payout": record, "platform_signature": sig, "receipts": docs}

    # -- views ----------------------------------------------------------------------------

    async def _balance(self, conn: Any, account: str) -> int:
        return int((await conn.execute(sa.select(balances.c.balance).where(balances.c.account == account))).scalar() or 0)

    async def _spent(self, conn: Any, key_id: str, now: float) -> int:
        charged = sa.select(sa.func.coalesce(sa.func.sum(holds.c.charged), 0)).where(holds.c.key_id == key_id, holds.c.status == "settled", holds.c.settled_at > now - DAY_S)
        held = sa.select(sa.func.coalesce(sa.func.sum(holds.c.amount), 0)).where(holds.c.key_id == key_id, holds.c.status == "held")
        return int((await conn.execute(charged)).scalar()) + int((await conn.execute(held)).scalar())

    async def balance(self, account: str) -> int:
        async with self.engine.connect() as conn:
            return await self._balance(conn, account)

    async def client_view(self, key_id: str) -> dict[str, int]:
        async with self.engine.connect() as conn:
            available = await self._balance(conn, client_account(key_id))
            held = int((await conn.execute(sa.select(sa.func.coalesce(sa.func.sum(holds.c.amount), 0)).where(holds.c.key_id == key_id, holds.c.status == "held"))).scalar())
            spent = int((await conn.execute(sa.select(sa.func.coalesce(sa.func.sum(holds.c.charged), 0)).where(holds.c.key_id == key_id, holds.c.status == "settled"))).scalar())
            spent_24h = await self._spent(conn, key_id, time.time()) - held
        return {"available": available, "held": held, "spent": spent, "spent_24h": spent_24h}

    async def node_view(self, node_pubkey: str) -> dict[str, int]:
        async with self.engine.connect() as conn:
            unpaid = await self._balance(conn, node_account(node_pubkey))
            q = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(receipts.c.value), 0)).where(receipts.c.node_pubkey == node_pubkey)
            count, earned = (await conn.execute(q)).one()
        return {"unpaid": unpaid, "earned": int(earned), "paid": int(earned) - unpaid, "receipts": int(count)}

    async def node_receipts(self, node_pubkey: str, *, unpaid_only: bool = False, limit: int = 100) -> list[dict[str, Any]]:
        q = sa.select(receipts).where(receipts.c.node_pubkey == node_pubkey).order_by(receipts.c.completed_at.desc(), receipts.c.job_id).limit(limit)
        if unpaid_only:
            q = q.where(receipts.c.payout_id.is_(None))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [{**_receipt_doc(r), "payout_id": r.payout_id} for r in rows]

    async def receipt(self, job_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(receipts).where(receipts.c.job_id == job_id))).first()
        return _receipt_doc(row) if row else None

    async def check(self) -> list[str]:
        """Every way the books fail to balance; empty when they do."""
        problems: list[str] = []
        async with self.engine.connect() as conn:
            # One snapshot for every query below, or a job settling meanwhile looks like a hole.
            if conn.dialect.name == "postgresql":
                await conn.execution_options(isolation_level="REPEATABLE READ")
            else:  # pysqlite opens its transaction before the first write; WAL then pins the snapshot
                await conn.execute(sa.text("DELETE FROM settings WHERE 1 = 0"))

            async def scalar(q: Any) -> int:
                return int((await conn.execute(q)).scalar() or 0)

            for txn, total in (await conn.execute(sa.select(ledger_entries.c.txn, sa.func.sum(ledger_entries.c.amount)).group_by(ledger_entries.c.txn).having(sa.func.sum(ledger_entries.c.amount) != 0))).all():
                problems.append(f"transaction {txn} sums to {total}, not 0")
            if (total := await scalar(sa.select(sa.func.sum(balances.c.balance)))) != 0:
                problems.append(f"balances sum to {total}, not 0")
            posted = dict((await conn.execute(sa.select(ledger_entries.c.account, sa.func.sum(ledger_entries.c.amount)).group_by(ledger_entries.c.account))).all())
            stored = dict((await conn.execute(sa.select(balances.c.account, balances.c.balance))).all())
            for acct in set(posted) | set(stored):
                if int(posted.get(acct) or 0) != int(stored.get(acct) or 0):
                    problems.append(f"{acct}: balance {stored.get(acct)} but its entries sum to {posted.get(acct)}")
            held = await scalar(sa.select(sa.func.sum(holds.c.amount)).where(holds.c.status == "held"))
            if (escrow := int(stored.get(ESCROW) or 0)) != held:
                problems.append(f"escrow holds {escrow} but open holds total {held}")
            admins = {client_account(k) for k in (await conn.execute(sa.select(api_keys.c.id).where(api_keys.c.role == "admin"))).scalars()}
            for acct, bal in stored.items():
                if bal < 0 and acct.startswith("client:") and acct not in admins:
                    problems.append(f"{acct} is overdrawn ({bal})")
            if (fees := int(stored.get(FEES) or 0)) != (want := await scalar(sa.select(sa.func.sum(receipts.c.fee)))):
                problems.append(f"platform fees {fees} but receipts' fees total {want}")
            unpaid = dict((await conn.execute(sa.select(receipts.c.node_pubkey, sa.func.sum(receipts.c.value)).where(receipts.c.payout_id.is_(None)).group_by(receipts.c.node_pubkey))).all())
            for acct, bal in stored.items():
                if acct.startswith("node:") and bal != int(unpaid.get(acct[5:]) or 0):
                    problems.append(f"{acct} holds {bal} but its unpaid receipts total {unpaid.get(acct[5:]) or 0}")
            for pk, total in unpaid.items():
                if node_account(pk) not in stored and total:
                    problems.append(f"node {pk[:12]} has unpaid receipts but no balance")
            paid = await scalar(sa.select(sa.func.sum(payouts.c.total)))
            if int(stored.get(PAYOUTS) or 0) != paid or paid != await scalar(sa.select(sa.func.sum(receipts.c.value)).where(receipts.c.payout_id.is_not(None))):
                problems.append(f"payouts {stored.get(PAYOUTS)} disagree with payout records {paid} or their receipts")
            q = sa.select(holds.c.job_id).select_from(holds.outerjoin(receipts, receipts.c.job_id == holds.c.job_id)).where(
                sa.or_(
                    sa.and_(holds.c.status == "settled", sa.or_(receipts.c.job_id.is_(None), receipts.c.price != holds.c.charged, holds.c.charged > holds.c.amount)),
                    sa.and_(holds.c.status != "settled", receipts.c.job_id.is_not(None)),
                )
            )
            for job_id in (await conn.execute(q)).scalars():
                problems.append(f"job {job_id}: its hold and its receipt disagree")
            ended = sa.select(holds.c.job_id, jobs.c.status).select_from(holds.join(jobs, jobs.c.id == holds.c.job_id)).where(holds.c.status == "held", jobs.c.status.in_(TERMINAL))
            for job_id, status in (await conn.execute(ended)).all():
                problems.append(f"job {job_id} is {status} but its hold of money is still held")
        return problems
