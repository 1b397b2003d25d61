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
from infernet.control.dispatch.recovery import recover
from infernet.control.health import Health
from infernet.control.metrics import Metrics
from infernet.control.money.billing import Billing, platform_identity
from infernet.control.money.history import History
from infernet.control.nodes.sessions import NodeSessions
from infernet.control.settings import Settings
from infernet.control.stats import Stats, vendor_of
from infernet.control.store import Store

log = logging.getLogger("infernet.control")


class ControlPlane:
    def __init__(self, store: Store, billing: Billing, settings: Settings | None = None, bus: Bus | None = None) -> None:
        s = self.settings = settings or Settings()
        self.store = store
        self.billing = billing
        self.history = History(store.engine)  # the books over time, read-only (the dashboard)
        self.bus = bus or LocalBus()
        self.health = Health(s.breaker, s.reputation_half_life_s)
        self.placement = Placement(
            self.bus, self.health, price_of=billing.output_rate, max_queued=s.max_queued, max_queued_per_key=s.max_queued_per_key, rng=random.Random(s.seed)
        )
        self.sessions = NodeSessions(store, self.bus, heartbeat_s=s.heartbeat_s, missed_heartbeats=s.missed_heartbeats)
        self.stats = Stats()
        self.metrics = Metrics(nodes_online=lambda: len(self.sessions.nodes), jobs_live=lambda: len(self.driver.jobs), slots_free=self.placement.slots_free, stats=self.stats)
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
        await recover(self.store, self.billing)
        if admin_key:
            await self.store.keys.ensure(admin_key, admin_name, "admin")
        self._maintenance = asyncio.create_task(self._maintain())

    async def _maintain(self) -> None:
        """Drop silent nodes; give waiting jobs the nodes whose cooldown ran out; sample the
        gauges the dashboard charts; now and then, write when the online nodes were last
        heard from."""
        written: dict[str, float] = {}
        next_write = time.monotonic() + self.settings.last_seen_write_s
        while True:
            await asyncio.sleep(min(1.0, self.settings.heartbeat_s / 2))
            self.sessions.reap()
            self.placement.tick()
            self.sample()
            if time.monotonic() >= next_write:
                next_write = time.monotonic() + self.settings.last_seen_write_s
                written = await self._write_last_seen(written)

    def sample(self) -> None:
        fleet = ((c.hello.tier, vendor_of(c.hello.hardware)) for c in self.sessions.nodes.values())
        self.stats.sample(len(self.placement.queue), fleet)

    async def _write_last_seen(self, written: dict[str, float]) -> dict[str, float]:
        """One UPDATE for the nodes heard from since the last write (a frame every few
        seconds per node must not cost a write each). Returns what is now written."""
        seen = {c.id: c.last_seen for c in self.sessions.nodes.values()}
        changed = {n: self.sessions.nodes[n].seen_at() for n, t in seen.items() if written.get(n) != t}
        try:
            await self.store.nodes.touch(changed)
        except Exception:  # the store is busy or away: the next round writes it
            log.exception("could not write the nodes' last_seen")
            return written
        return seen

    async def aclose(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        await self.driver.aclose()
        await self.sessions.aclose()
        await self.bus.aclose()
        await self.store.close()
