"""Read-only views of the books over time, for the dashboard: a key's spend and balance per
period, its open holds, and every node's earnings in one query.

Nothing here writes. The figures come from the same rows `Ledger` keeps (entries, holds,
receipts), so they agree with `client_view` and `node_view` to the micro-unit. Periods are
cut in Python, not SQL: SQLite and PostgreSQL disagree on flooring a float timestamp.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from infernet.control.money.ledger import client_account, node_account
from infernet.control.store.schema import balances, holds, ledger_entries, receipts


def _periods(since: float, until: float, period_s: int) -> list[int]:
    start = int(since) // period_s * period_s
    return list(range(start, int(until) + 1, period_s))


class History:
    def __init__(self, engine: Any) -> None:
        self.engine = engine

    async def spend(self, key_id: str, since: float, until: float, period_s: int) -> list[dict[str, int]]:
        """Per period from `since`: what the key's settled jobs were charged, and how many."""
        q = sa.select(holds.c.settled_at, holds.c.charged).where(
            holds.c.key_id == key_id, holds.c.status == "settled", holds.c.settled_at >= since, holds.c.settled_at <= until
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        out = {t: {"t": t, "charged": 0, "jobs": 0} for t in _periods(since, until, period_s)}
        for settled_at, charged in rows:
            p = out.get(int(settled_at) // period_s * period_s)
            if p is not None:
                p["charged"] += int(charged)
                p["jobs"] += 1
        return list(out.values())

    async def balance(self, key_id: str, since: float, until: float, period_s: int) -> list[dict[str, int]]:
        """The key's available balance at the end of each period from `since`."""
        account = client_account(key_id)
        before = sa.select(sa.func.coalesce(sa.func.sum(ledger_entries.c.amount), 0)).where(ledger_entries.c.account == account, ledger_entries.c.created_at < since)
        during = sa.select(ledger_entries.c.created_at, ledger_entries.c.amount).where(
            ledger_entries.c.account == account, ledger_entries.c.created_at >= since, ledger_entries.c.created_at <= until
        ).order_by(ledger_entries.c.created_at)
        async with self.engine.connect() as conn:
            running = int((await conn.execute(before)).scalar() or 0)
            rows = (await conn.execute(during)).all()
        out, i = [], 0
        for t in _periods(since, until, period_s):
            while i < len(rows) and rows[i][0] < t + period_s:
                running += int(rows[i][1])
                i += 1
            out.append({"t": t, "balance": running})
        return out

    async def open_holds(self, key_id: str, limit: int = 100) -> list[dict[str, Any]]:
        q = sa.select(holds.c.job_id, holds.c.amount, holds.c.created_at).where(holds.c.key_id == key_id, holds.c.status == "held").order_by(holds.c.created_at.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [{"job_id": r.job_id, "amount": int(r.amount), "created_at": r.created_at} for r in (await conn.execute(q)).all()]

    async def node_earnings(self) -> dict[str, dict[str, int]]:
        """Every node's earned (all receipts), unpaid and receipt count, keyed by pubkey."""
        earned_q = sa.select(receipts.c.node_pubkey, sa.func.count(), sa.func.coalesce(sa.func.sum(receipts.c.value), 0)).group_by(receipts.c.node_pubkey)
        prefix = node_account("")
        unpaid_q = sa.select(balances.c.account, balances.c.balance).where(balances.c.account.like(prefix + "%"))
        async with self.engine.connect() as conn:
            earned = (await conn.execute(earned_q)).all()
            unpaid = {acct[len(prefix):]: int(bal) for acct, bal in (await conn.execute(unpaid_q)).all()}
        out = {}
        for pubkey, count, total in earned:
            left = unpaid.get(pubkey, 0)
            out[pubkey] = {"earned": int(total), "unpaid": left, "paid": int(total) - left, "receipts": int(count)}
        return out
