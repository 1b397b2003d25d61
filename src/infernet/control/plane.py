"""The control plane, wired: store, bus, node sessions, health, placement, the job driver.
No HTTP here (`api/` serves it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from pathlib import Path

from infernet import config
from infernet.control.bus import Bus, LocalBus
from infernet.control.dispatch.driver import Driver
from infernet.control.dispatch.placement import Placement
from infernet.control.dispatch.recovery import recover, release_orphan_holds
from infernet.control.health import Health
from infernet.control.metrics import Metrics
from infernet.control.money.billing import Billing, platform_identity
from infernet.control.nodes.sessions import NodeSessions
from infernet.control.settings import Settings
from infernet.control.store import Store


log = logging.getLogger("infernet.control")


class ControlPlane:
    def __init__(self, store: Store, billing: Billing, settings: Settings | None = None, bus: Bus | None = None) -> None:
        s = self.settings = settings or Settings()
        self.store = store
        self.billing = billing
        self.bus = bus or LocalBus()
        self.health = Health(s.breaker, s.reputation_half_life_s)
        self.placement = Placement(
            self.bus, self.health, price_of=billing.output_rate, max_queued=s.max_queued, max_queued_per_key=s.max_queued_per_key, rng=random.Random(s.seed)
        )
        self.sessions = NodeSessions(store, self.bus, heartbeat_s=s.heartbeat_s, missed_heartbeats=s.missed_heartbeats)
        self.metrics = Metrics(nodes_online=lambda: len(self.sessions.nodes), jobs_live=lambda: len(self.driver.jobs), slots_free=self.placement.slots_free)
        self.driver = Driver(store, self.bus, self.placement, self.health, s, billing=billing, metrics=self.metrics)
        self._maintenance: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, db_url: str, settings: Settings | None = None, data_dir: Path | None = None, bus: Bus | None = None) -> ControlPlane:
        """`data_dir` holds the platform's signing key; default: beside a SQLite file, else INFERNET_HOME."""
        if data_dir is None:
            data_dir = Path(db_url.removeprefix("sqlite:///")).parent if db_url.startswith("sqlite:///") else config.home()
        store = await Store.open(db_url)
        return cls(store, Billing(store, platform_identity(data_dir)), settings, bus)

    async def start(self, admin_key: str | None = None, admin_name: str = "admin") -> None:
        await recover(self.store, self.billing, self.settings.orphan_hold_s)
        if admin_key:
            await self.store.keys.ensure(admin_key, admin_name, "admin")
        self._maintenance = asyncio.create_task(self._maintain())

    async def _maintain(self) -> None:
        """Drop silent nodes; give waiting jobs the nodes whose cooldown ran out; release the
        holds a crashed run left without a job."""
        next_sweep = time.monotonic() + self.settings.orphan_hold_s
        while True:
            await asyncio.sleep(min(1.0, self.settings.heartbeat_s / 2))
            self.sessions.reap()
            self.placement.tick()
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self.settings.orphan_hold_s / 2
                try:
                    await release_orphan_holds(self.store, self.billing, self.settings.orphan_hold_s)
                except Exception:  # the next sweep tries again
                    log.exception("could not sweep orphaned holds")

    async def aclose(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        await self.driver.aclose()
        await self.sessions.aclose()
        await self.bus.aclose()
        await self.store.close()
