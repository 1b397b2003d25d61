"""The control plane, wired: store, bus, node sessions, health, placement, the job driver.
No HTTP here (`api/` serves it)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import random
import secrets
import time
from pathlib import Path
from typing import Any

from infernet import config
from infernet.control.bus import Bus, LocalBus
from infernet.control.bus.redis import RedisBus
from infernet.control.dispatch.driver import Driver
from infernet.control.dispatch.placement import Placement
from infernet.control.dispatch.recovery import release_ended_holds, sweep
from infernet.control.errors import InfernetError
from infernet.control.health import Health
from infernet.control.metrics import Metrics
from infernet.control.money.billing import Billing, platform_identity
from infernet.control.money.history import History
from infernet.control.nodes.sessions import NodeSessions
from infernet.control.settings import Settings
from infernet.control.stats import Stats, vendor_of
from infernet.control.store import Store
from infernet.control.store.redis import RedisNonces, RedisRates, connect

log = logging.getLogger("infernet.control")


class ControlPlane:
    """`alone`: this control plane holds its database by itself (the embedded SQLite file,
    locked), so at start every open job in it is a previous run's and is recovered at once;
    replicas of a cluster recover only the jobs whose lease ran out."""

    def __init__(self, store: Store, billing: Billing, settings: Settings | None = None, bus: Bus | None = None, *, alone: bool = False) -> None:
        s = self.settings = settings or Settings()
        self.store = store
        self.billing = billing
        self.history = History(store.engine)  # the books over time, read-only (the dashboard)
        self.bus = bus or LocalBus(store.owner)
        self.alone = alone
        store.jobs.lease_s = s.lease_s
        self.health = Health(s.breaker, s.reputation_half_life_s)
        self.health.share = self.bus.announce  # what one replica learns of a node, all learn
        self.placement = Placement(
            self.bus, self.health, price_of=billing.output_rate, max_queued=s.max_queued, max_queued_per_key=s.max_queued_per_key, rng=random.Random(s.seed)
        )
        self.sessions = NodeSessions(store, self.bus, heartbeat_s=s.heartbeat_s, missed_heartbeats=s.missed_heartbeats)
        self.stats = Stats()
        self.metrics = Metrics(nodes_online=lambda: len(self.sessions.nodes), jobs_live=lambda: len(self.driver.jobs), slots_free=self.placement.slots_free, stats=self.stats)
        self.driver = Driver(store, self.bus, self.placement, self.health, s, billing=billing, metrics=self.metrics)
        self._maintenance: asyncio.Task[None] | None = None
        self._leases: asyncio.Task[None] | None = None
        self._lock: Any = None

    @classmethod
    async def open(
        cls, db_url: str, settings: Settings | None = None, data_dir: Path | None = None, bus: Bus | None = None, *,
        migrate: bool = True, redis_url: str | None = None,
    ) -> ControlPlane:
        """`data_dir` holds the platform's signing key; default: beside a SQLite file, else
        INFERNET_HOME. A SQLite file is the embedded store: one control plane holds it (a lock
        file beside it), so a second one on the same file is refused. `migrate`: bring the
        schema up to date (a cluster replica passes False: the cluster migrates on purpose).
        `redis_url`: a replica of a cluster: the bus, nonces and rate limits go through Redis."""
        if redis_url is not None and bus is None:
            bus = RedisBus(redis_url)
        sqlite = db_url.startswith("sqlite:///")
        if data_dir is None:
            data_dir = Path(db_url.removeprefix("sqlite:///")).parent if sqlite else config.home()
        lock = _lock(Path(db_url.removeprefix("sqlite:///"))) if sqlite else None
        replica = bus.replica if bus is not None else "r-" + secrets.token_hex(6)
        try:
            store = await Store.open(db_url, migrate=migrate, owner=replica, pool_size=(settings or Settings()).db_pool)
        except BaseException:
            if lock is not None:
                lock.close()
            raise
        if redis_url is not None:
            shared, prefix = connect(redis_url)
            store.nonces, store.rates = RedisNonces(shared, prefix), RedisRates(shared, prefix)
        cp = cls(store, Billing(store, platform_identity(data_dir)), settings, bus or LocalBus(replica), alone=lock is not None)
        cp._lock = lock
        return cp

    async def start(self, admin_key: str | None = None, admin_name: str = "admin") -> None:
        await self.bus.start()
        await self._recover(alone=self.alone)
        await release_ended_holds(self.store, self.billing, self.settings.orphan_hold_s)
        if admin_key:
            await self.store.keys.ensure(admin_key, admin_name, "admin")
        self._maintenance = asyncio.create_task(self._maintain())
        self._leases = asyncio.create_task(self._renew_leases())

    async def _recover(self, *, alone: bool = False) -> None:
        try:
            await sweep(self.store, self.billing, self.driver, alone=alone)
        except Exception:  # the store is away: the next round tries again
            log.exception("could not sweep for jobs whose replica went away")

    async def _maintain(self) -> None:
        """Drop silent nodes; give waiting jobs the nodes whose cooldown ran out; sample the
        gauges the dashboard charts; now and then, write when the online nodes were last
        heard from."""
        s = self.settings
        written: dict[str, float] = {}
        now = time.monotonic()
        next_write, next_sweep = now + s.last_seen_write_s, now + s.lease_s / 2
        next_holds = now + s.orphan_hold_s / 2
        while True:
            await asyncio.sleep(min(1.0, s.heartbeat_s / 2))
            self.sessions.reap()
            self.placement.tick(min(1.0, s.heartbeat_s / 2))
            self.sample()
            now = time.monotonic()
            if now >= next_sweep and not self.alone:
                next_sweep = now + s.lease_s / 2
                await self._recover()
            if now >= next_holds:
                next_holds = now + s.orphan_hold_s / 2
                try:
                    await release_ended_holds(self.store, self.billing, s.orphan_hold_s)
                except Exception:  # the next round tries again
                    log.exception("could not sweep for held money of ended or missing jobs")
            if now >= next_write:
                next_write = now + s.last_seen_write_s
                written = await self._write_last_seen(written)

    async def _renew_leases(self) -> None:
        """Our jobs' leases, one statement for all of them, every third of a lease. A task of
        its own: behind a slow sweep or a busy store in the maintenance round, a renewal
        came too late and another replica took over jobs this one was still driving."""
        lease = self.settings.lease_s
        last = time.monotonic()
        while True:
            await asyncio.sleep(lease / 3)
            try:
                await self.store.jobs.renew()
            except Exception:
                log.exception("could not renew this replica's job leases")
                continue
            now = time.monotonic()
            if now - last > lease * 2 / 3:  # one more such delay and other replicas take our jobs
                log.warning("job leases renewed %.1f s after the last renewal (the lease is %g s): this replica's loop or its database is overloaded", now - last, lease)
            last = now

    @property
    def draining(self) -> bool:
        return self.sessions.draining

    async def drain(self, grace_s: float = 30.0) -> bool:
        """Go away gracefully (SIGTERM on `infernet control-plane serve`): `/healthz` answers
        503 so a load balancer stops sending here; this replica's nodes take no new job and
        are sent to their next control-plane URL once their jobs end; the jobs driven here run
        to their end. Returns True when everything ended within `grace_s`; else the nodes still
        busy are sent away (their jobs follow the fault rules) and the rest is left to
        shutdown: jobs still open keep their lease until it runs out, then another replica's
        sweep takes them over."""
        self.sessions.drain()
        deadline = time.monotonic() + grace_s
        while (self.driver.jobs or self.sessions.nodes) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        clean = not self.driver.jobs and not self.sessions.nodes
        self.sessions.send_all_away()
        await self.driver.settled()  # the ended jobs' final rows and settlements are committed
        return clean

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
        for task in (self._maintenance, self._leases):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.driver.aclose()
        await self.sessions.aclose()
        await self.bus.aclose()
        await self.store.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _lock(db: Path) -> Any:
    """Hold `<db>.lock` for this process's life; refuse when another process holds it."""
    db.parent.mkdir(parents=True, exist_ok=True)
    f = open(db.with_name(db.name + ".lock"), "a+")  # noqa: SIM115 - held open until aclose
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise InfernetError(f"another control plane is using {db} (its lock {db.name}.lock is held); stop it, or give this one another INFERNET_HOME") from None
    return f
