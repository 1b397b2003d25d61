"""A write transaction that posts ledger rows once, at its end.

A job moves money twice (hold, settle), and each movement is a few ledger entries plus one
balance change per account. Written as they come, that is two statements per movement; a
journal batch of a hundred jobs would run four hundred. A `Tx` collects them instead: the
entries go in one multi-row INSERT, and the balance changes, summed per account, in one
upsert per account (locked in account order, so two replicas never deadlock on them).

Whoever reads a balance inside the transaction calls `flush` first (`touches` says whether
it must), so a read never misses a change this same transaction made.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError

from infernet.control.store.engine import insert_for
from infernet.control.store.schema import balances, ledger_entries

log = logging.getLogger("infernet.store")
T = TypeVar("T")

# PostgreSQL's deadlock_detected and serialization_failure: the transaction was rolled back
# whole, through no fault of its own, and the same writes may simply go again.
CONFLICTS = frozenset({"40P01", "40001"})


@functools.lru_cache(maxsize=8)
def _balance_add(dialect: str) -> Any:
    """INSERT a delta, or add it to the existing balance; executemany-able."""
    ins = insert_for(dialect)(balances)
    return ins.on_conflict_do_update(index_elements=["account"], set_={"balance": balances.c.balance + ins.excluded.balance})


class Tx:
    __slots__ = ("_deltas", "_entries", "books_locked", "conn")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.books_locked = False  # the ledger took its transaction-wide lock (money/ledger.py)
        self._entries: list[dict[str, Any]] = []
        self._deltas: dict[str, int] = {}

    @property
    def dialect(self) -> Any:
        return self.conn.dialect

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return await self.conn.execute(statement, parameters)

    def post(self, rows: list[dict[str, Any]]) -> None:
        """Ledger entries (`account`, `amount`, ...) to write before the transaction commits."""
        self._entries += rows
        for r in rows:
            self._deltas[r["account"]] = self._deltas.get(r["account"], 0) + r["amount"]

    def touches(self, account: str) -> bool:
        return account in self._deltas

    async def flush(self) -> None:
        if not self._entries:
            return
        entries, deltas = self._entries, self._deltas
        self._entries, self._deltas = [], {}
        await self.conn.execute(ledger_entries.insert(), entries)
        changes = [{"account": a, "balance": d} for a, d in sorted(deltas.items()) if d]
        if changes:
            await self.conn.execute(_balance_add(self.dialect.name), changes)


@asynccontextmanager
async def begin(engine: Any) -> AsyncIterator[Tx]:
    """A transaction whose ledger rows are written just before it commits."""
    async with engine.begin() as conn:
        tx = Tx(conn)
        yield tx
        await tx.flush()


def conflicted(exc: BaseException) -> bool:
    """The database aborted this transaction for a conflict with another one (a deadlock,
    a serialization failure): nothing was written, and trying again is correct."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    return any(getattr(e, "sqlstate", None) in CONFLICTS or getattr(e, "pgcode", None) in CONFLICTS for e in (orig, getattr(orig, "__cause__", None)))


async def retrying(run: Callable[[], Awaitable[T]], attempts: int = 6, base_s: float = 0.01, rng: random.Random | None = None) -> T:
    """`run()` (one whole transaction) again when the database aborted it for a conflict.
    Two replicas' batches that lock the same rows in different orders deadlock now and
    then; the loser goes again after a random wait (jittered, doubling), so they part."""
    rng = rng or random
    for attempt in range(attempts):
        try:
            return await run()
        except DBAPIError as exc:
            if not conflicted(exc) or attempt == attempts - 1:
                raise
            log.info("a transaction conflicted with another (%s); trying again", type(exc.orig).__name__)
            await asyncio.sleep(base_s * (2**attempt) * (0.5 + rng.random()))
    raise AssertionError("unreachable")
