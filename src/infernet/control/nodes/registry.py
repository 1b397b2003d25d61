"""The node registry (the nodes table), written behind the sessions, many nodes a statement.

A hello that waited on the database stalled its session (no frame read, so the reaper
dropped it), and a fleet reconnecting or dropping at once ran the pool dry with a statement
per node (bench/fleet.py). So a session queues its node's latest state here and goes on; a
writer task turns what is queued into one upsert (and one offline mark) per `BATCH` nodes.
Readers of the registry (the node list, the model list, the probe) `flush` first, so a node
online here is listed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from infernet.control.store import Store

log = logging.getLogger("infernet.control")

OFFLINE = "offline"  # a queued change: the node's row, marked offline
BATCH = 500


class Registry:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._rows: dict[str, dict[str, Any] | str] = {}  # node -> its row, or OFFLINE
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def online(self, row: dict[str, Any]) -> None:
        """Queue a node's row (online, as it advertises itself now)."""
        self._queue(row["id"], {**row, "status": "online"})

    def offline(self, node_id: str) -> None:
        """Queue a node's going offline; a row not written yet is written offline."""
        row = self._rows.get(node_id)
        self._queue(node_id, {**row, "status": "offline"} if isinstance(row, dict) else OFFLINE)

    def _queue(self, node_id: str, row: dict[str, Any] | str) -> None:
        self._rows[node_id] = row  # the latest state of a node wins
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._write())

    async def _write(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # the store is busy or away: what is queued waits for the next round
                log.exception("could not write the node registry; retrying")
                await asyncio.sleep(1.0)
                self._wake.set()

    async def flush(self, batch: int = BATCH) -> None:
        """Write the rows queued so far, `batch` nodes a statement."""
        async with self._lock:
            while self._rows:
                taken = {i: self._rows.pop(i) for i in list(self._rows)[:batch]}
                try:
                    await self.store.nodes.upsert_many([r for r in taken.values() if isinstance(r, dict)])
                    await self.store.nodes.set_offline([i for i, r in taken.items() if r is OFFLINE])
                except Exception:
                    for i, r in taken.items():  # a newer state of the node, queued meanwhile, wins
                        self._rows.setdefault(i, r)
                    raise

    async def aclose(self) -> None:
        """Stop the writer and write what is left."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.flush()
        except Exception:
            log.exception("could not write the node registry on the way out")
