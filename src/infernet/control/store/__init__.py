"""Persistence through SQLAlchemy Core: SQLite embedded, PostgreSQL in cluster mode.

`Store` is the database with one repository per concern (`jobs`, `keys`, `nodes`,
`nonces`, `settings`) and the write-behind `journal` that job writes and ledger movements
share. The ledger (`control/money/ledger.py`) takes the same engine.
"""

from __future__ import annotations

from typing import Any

from infernet.control.store.engine import open_engine, upsert
from infernet.control.store.jobs import JobRepo
from infernet.control.store.journal import Journal
from infernet.control.store.keys import (
    KeyLimits,
    KeyRecord,
    KeyRepo,
    hash_key,
    new_api_key,
)
from infernet.control.store.migrate import require_head, upgrade
from infernet.control.store.nodes import NodeRepo
from infernet.control.store.nonces import NonceRepo
from infernet.control.store.rates import RateRepo
from infernet.control.store.schema import TERMINAL
from infernet.control.store.settings import SettingsRepo


class Store:
    def __init__(self, engine: Any, owner: str | None = None) -> None:
        self.engine = engine
        self.owner = owner  # the replica using it: jobs it runs are leased to it
        self.journal = Journal(engine)
        self.jobs = JobRepo(engine, self.journal, owner)
        self.keys = KeyRepo(engine)
        self.nodes = NodeRepo(engine)
        self.nonces: NonceRepo | Any = NonceRepo(engine)  # a cluster shares them in Redis instead
        self.rates: RateRepo | Any = RateRepo(engine)
        self.settings = SettingsRepo(engine)

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True, pool_size: int = 10, owner: str | None = None) -> Store:
        """`migrate`: bring the schema up to date (the embedded default); else refuse a
        database that is behind (a cluster migrates once, on purpose)."""
        engine = await open_engine(url, pool_size=pool_size)
        if migrate:
            await upgrade(engine)
        else:
            await require_head(engine, url)
        return cls(engine, owner)

    async def close(self) -> None:
        await self.journal.drain()
        await self.engine.dispose()


__all__ = ["TERMINAL", "KeyLimits", "KeyRecord", "Store", "hash_key", "new_api_key", "upsert"]
