"""Where jobs go: this replica's view of the fleet, the fair queue, and picking a node.

The view is built from the bus's fleet deltas plus each node's health, as `NodeSnapshot`s in
the router's `Fleet` index. A pick is only a proposal: the slot is reserved by the sessions
that hold the node's socket (the slot authority), through the bus. Between a pick and the
authority's answer the slot counts as taken here (`_pending`), so one replica never hands the
same free slot to two jobs.

When no node is free a job waits in the `FairQueue`; every freed slot is handed out at once,
in queue order (`_dispatch`), so a newcomer never overtakes a waiting job.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from infernet.control.bus import (
    HEARTBEAT_LOST,
    Bus,
    FleetDelta,
    NodeGone,
    NodeInfo,
    NodeLoad,
    NodeSeen,
    Release,
    Reserve,
)
from infernet.control.dispatch.jobs import Unplaceable
from infernet.control.dispatch.queue import FairQueue
from infernet.control.dispatch.router import (
    Bag,
    Fleet,
    NodeSnapshot,
    RouteRequest,
    choose,
    eligible,
    feasible,
)
from infernet.control.errors import ModelNotFound, NoNodes
from infernet.control.health import Health
from infernet.control.nodes.claims import paid_tier

PriceOf = Callable[[str, "dict[str, int] | None"], int]
# Every node's snapshot is rebuilt at least this often by `tick` (its reputation drifts with
# time alone, with a half-life of an hour); nodes under a breaker cooldown, every tick.
REFRESH_ROUND_S = 60.0


@dataclass(frozen=True, slots=True)
class Offer:
    """An online node serving a model, and the tier it is paid as now."""

    info: NodeInfo
    paid_tier: str


@dataclass(eq=False)
class Waiter:
    job_id: str
    key_id: str
    req: RouteRequest
    fut: asyncio.Future[str]  # a node whose slot is held for this job


class Placement:
    def __init__(self, bus: Bus, health: Health, *, price_of: PriceOf | None = None, max_queued: int = 1000, max_queued_per_key: int = 100, rng: random.Random | None = None) -> None:
        self.bus = bus
        self.health = health
        # The output rate a node of a paid tier asking these rates is paid (billing knows the
        # price table); `max_price` routing compares it, not the node's advertised ask.
        self.price_of: PriceOf = price_of or (lambda tier, asked: 0)
        self.fleet = Fleet()
        self.infos: dict[str, NodeInfo] = {}
        self.queue: FairQueue[Waiter] = FairQueue(max_queued, max_queued_per_key)
        self._asks: Counter[RouteRequest] = Counter()  # waiters per distinct ask, to stop a pass early
        self._pending: dict[str, int] = {}
        self._cooling: set[str] = set()  # nodes whose snapshot has a cooldown (blocked_until)
        self._round: list[str] = []  # what `tick` has yet to rebuild this round
        self._rng = rng or random.Random()
        self._job_s = 0.0  # moving average of a job's run time, for Retry-After
        health.on_change = self.refresh
        bus.watch(self.on_fleet)

    # -- views ----------------------------------------------------------------------------

    def models(self) -> dict[str, str]:
        """Model name -> kind, for every model an online node serves."""
        out: dict[str, str] = {}
        for info in self.infos.values():
            for m in info.models:
                out.setdefault(m.name, m.kind)
        return out

    def serving(self, model: str) -> Bag:
        return self.fleet.serving(model)

    def offers(self, model: str) -> list[Offer]:
        """The online nodes serving `model`, from the fleet index (never a walk of the fleet)."""
        return [self.offer(s.node_id) for s in self.fleet.serving(model) if s.node_id in self.infos]

    def offer(self, node_id: str, info: NodeInfo | None = None) -> Offer:
        """`info`: the node as it was seen when picked, for a node that may have left since."""
        info = info or self.infos[node_id]
        return Offer(info, paid_tier(info.tier, self.health.verified(node_id, info.tier)))

    def context_of(self, model: str) -> int | None:
        """The longest context any online node serving `model` advertises."""
        contexts = [m.context_length for o in self.offers(model) for m in o.info.models if m.name == model and m.context_length]
        return max(contexts) if contexts else None

    def kind_of(self, model: str) -> str:
        """"chat" or "embedding" for a model some online node serves; raises NoNodes or
        ModelNotFound."""
        if not self.infos:
            raise NoNodes()
        for snap in self.fleet.serving(model):
            info = self.infos.get(snap.node_id)
            if info is not None:
                return next((m.kind for m in info.models if m.name == model), "chat")
        raise ModelNotFound(model)

    def slots_free(self) -> int:
        return sum(max(0, i.capacity - i.active) for i in self.infos.values())

    # -- the fleet, as the bus reports it -------------------------------------------------

    def on_fleet(self, msg: FleetDelta) -> None:
        match msg:
            case NodeSeen(info=info):
                self.infos[info.node_id] = info
                self.refresh(info.node_id)
                self._dispatch(prune=True)
            case NodeLoad(node_id=node_id, session=session, active=active):
                info = self.infos.get(node_id)
                if info is not None and info.session == session:  # not a replaced session's
                    self.infos[node_id] = msgspec.structs.replace(info, active=active)
                    self.refresh(node_id)
                    if active < info.capacity:
                        self._dispatch()
            case NodeGone(node_id=node_id, session=session, reason=reason, busy=busy):
                info = self.infos.get(node_id)
                if info is None or info.session != session:
                    return  # a session already replaced by a reconnect
                del self.infos[node_id]
                self.fleet.remove(node_id)
                self._cooling.discard(node_id)
                if busy or reason == HEARTBEAT_LOST:
                    self.health.dropped(node_id, info.tier)
                self._dispatch(prune=True)
            case _:
                self.health.on_fleet(msg)

    def refresh(self, node_id: str) -> None:
        info = self.infos.get(node_id)
        if info is None:
            return
        view = self.health.view(node_id, info.tier, time.monotonic())
        self.fleet.put(NodeSnapshot(
            node_id=node_id, models=frozenset(m.name for m in info.models), tier=info.tier, capacity=max(1, info.capacity),
            active=info.active + self._pending.get(node_id, 0), tokens_per_s=view.tokens_per_s, latency_ms=view.latency_ms,
            reputation=view.reputation, price=self.price_of(self.offer(node_id).paid_tier, info.price), blocked_until=view.blocked_until,
            features={m.name: frozenset(m.features) | frozenset(m.modalities) for m in info.models},
        ))
        if view.blocked_until:
            self._cooling.add(node_id)
        else:
            self._cooling.discard(node_id)

    def tick(self, every_s: float = 1.0) -> None:
        """Give waiting jobs the nodes whose circuit cooldown ran out (`every_s`: how often
        this is called). Rebuilds the snapshots of the nodes under a cooldown, and a slice of
        the rest so each is rebuilt every REFRESH_ROUND_S: rebuilding the whole fleet each
        second cost 1.4 s a tick at 100,000 nodes (bench/fleet.py), more than the second."""
        for node_id in list(self._cooling):
            self.refresh(node_id)
        if not self._round:
            self._round = list(self.infos)
        n = min(len(self._round), max(1, math.ceil(len(self.infos) * every_s / REFRESH_ROUND_S)))
        for node_id in self._round[len(self._round) - n:]:
            self.refresh(node_id)
        del self._round[len(self._round) - n:]
        self._dispatch()

    # -- placing one job ------------------------------------------------------------------

    def pick(self, req: RouteRequest, only: str | None = None) -> NodeSnapshot | None:
        req = dataclasses.replace(req, now=time.monotonic())
        if only is not None:
            snap = self.fleet.nodes.get(only)
            return snap if snap is not None and eligible(snap, req) else None
        return choose(self.fleet, req, self._rng)

    def hold(self, node_id: str) -> None:
        """Count a slot of the node as taken here until `confirm` or `unhold`."""
        self._pending[node_id] = self._pending.get(node_id, 0) + 1
        self.refresh(node_id)

    def unhold(self, node_id: str) -> None:
        n = self._pending.get(node_id, 0) - 1
        if n > 0:
            self._pending[node_id] = n
        else:
            self._pending.pop(node_id, None)
        self.refresh(node_id)
        self._dispatch()

    async def confirm(self, node_id: str, job_id: str) -> bool:
        """Ask the slot authority for the held slot. False: the node is gone or full."""
        try:
            ok = await self.bus.send(Reserve(node_id, job_id))
        finally:
            n = self._pending.get(node_id, 0) - 1
            if n > 0:
                self._pending[node_id] = n
            else:
                self._pending.pop(node_id, None)
        if ok:
            self.health.assigned(node_id)
        self.refresh(node_id)
        if not ok:
            self._dispatch()
        return ok

    async def release(self, node_id: str, job_id: str) -> None:
        await self.bus.send(Release(node_id, job_id))

    def enqueue(self, job_id: str, key_id: str, req: RouteRequest, *, front: bool) -> Waiter:
        """Wait for a slot (raises QueueFull). The waiter's future gets a held node."""
        waiter = Waiter(job_id, key_id, req, asyncio.get_running_loop().create_future())
        self.queue.push(key_id, waiter, front=front)
        self._asks[req] += 1
        self._dispatch()
        return waiter

    def dequeue(self, waiter: Waiter) -> None:
        if self.queue.remove(waiter.key_id, waiter):
            self._forget(waiter.req)

    def abandon(self, waiter: Waiter) -> None:
        """The waiter's job ends without the slot: out of the queue at once (before its end is
        written, so no slot that frees meanwhile goes to it), and a slot already held for it
        is given back."""
        self.dequeue(waiter)
        fut = waiter.fut
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            self.unhold(fut.result())

    def _forget(self, req: RouteRequest) -> None:
        n = self._asks[req] - 1
        if n > 0:
            self._asks[req] = n
        else:
            del self._asks[req]

    def waiting(self, key_id: str) -> int:
        return self.queue.waiting(key_id)

    def unplaceable(self, req: RouteRequest) -> Unplaceable | None:
        """Why no online node could ever take this request; None when waiting is worth it."""
        if feasible(self.fleet, req):
            return None
        if len(self.fleet.serving(req.model)) > len(req.exclude):
            return Unplaceable("no_eligible_node", f"no online node serving {req.model} meets this job's constraints (tier, price, latency)")
        return Unplaceable("model_not_found", f"no online node serves {req.model}")

    def _dispatch(self, prune: bool = False) -> None:
        """Hand free slots to waiting jobs in fair order; with `prune`, fail the waiters no
        online node could ever take (their last node went away). Waiters that ask the same
        thing (model and constraints) are asked once per pass, and a pass ends as soon as
        every distinct ask found no node: a deep queue of like jobs costs one pick, not a walk
        of the queue, each time a slot frees."""
        progress = True
        stuck: set[RouteRequest] = set()  # a slot taken frees none: what found none stays stuck
        while progress and len(self.queue):
            progress = False
            for key, w in self.queue.order():
                if w.req in stuck:
                    continue
                pick = self.pick(w.req)
                if pick is not None:
                    self.queue.take(key, w)
                    self._forget(w.req)
                    self.hold(pick.node_id)
                    w.fut.set_result(pick.node_id)
                    progress = True
                    break
                if prune and (why := self.unplaceable(w.req)) is not None:
                    self.queue.remove(key, w)
                    self._forget(w.req)
                    w.fut.set_exception(Refused(why))
                    progress = True
                    break
                stuck.add(w.req)
                if len(stuck) >= len(self._asks):
                    return

    # -- Retry-After ----------------------------------------------------------------------

    def observe_job(self, seconds: float) -> None:
        self._job_s = seconds if not self._job_s else 0.9 * self._job_s + 0.1 * seconds

    def retry_after(self, model: str) -> int:
        """Seconds until a retry likely finds a slot: the queue ahead over the model's capacity."""
        capacity = sum(n.capacity for n in self.fleet.serving(model)) or 1
        return max(1, min(60, math.ceil((self._job_s or 1.0) * (len(self.queue) + 1) / capacity)))


class Refused(Exception):
    """A waiter's last possible node went away."""

    def __init__(self, why: Unplaceable) -> None:
        super().__init__(why.message)
        self.why = why
