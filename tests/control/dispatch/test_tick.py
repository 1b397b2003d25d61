"""The maintenance tick: a waiter gets a node whose cooldown ran out, and a tick costs the
nodes under a cooldown plus a slice of the fleet, not the whole fleet each second."""

from __future__ import annotations

import asyncio
import time

from infernet.control.bus import LocalBus, NodeInfo, NodeSeen
from infernet.control.dispatch import placement as placement_mod
from infernet.control.dispatch.placement import Placement
from infernet.control.dispatch.router import RouteRequest
from infernet.control.health import Health
from infernet.control.health.circuit import BreakerPolicy
from infernet.protocol.messages import ModelAd


def fleet(n: int, health: Health) -> tuple[LocalBus, Placement]:
    bus = LocalBus("r-a")
    p = Placement(bus, health)
    for i in range(n):
        bus.announce(NodeSeen(NodeInfo(node_id=f"{i:064x}", models=(ModelAd(name="m"),), tier="cpu", capacity=2, session="s", replica="r-a")))
    return bus, p


def test_a_tick_rebuilds_the_cooling_nodes_and_a_slice_of_the_rest():
    health = Health(BreakerPolicy(threshold=1, cooldown_s=30))
    _, p = fleet(6000, health)
    for i in range(3):
        health.breaker(f"{i:064x}").on_failure(time.monotonic())
        p.refresh(f"{i:064x}")
    rebuilt: list[str] = []
    real = p.refresh
    p.refresh = lambda node_id: (rebuilt.append(node_id), real(node_id))[1]  # type: ignore[method-assign]
    for _ in range(int(placement_mod.REFRESH_ROUND_S)):
        p.tick()
    # each tick: the 3 cooling nodes and 6000/60 others; in a round every node once at least
    assert len(rebuilt) <= 60 * (3 + 100)
    assert set(rebuilt) == set(p.infos)


async def test_a_waiter_gets_the_node_whose_cooldown_ran_out_at_the_next_tick():
    health = Health(BreakerPolicy(threshold=1, cooldown_s=0.2))
    _, p = fleet(1, health)
    node = f"{0:064x}"
    health.breaker(node).on_failure(time.monotonic())
    p.refresh(node)
    waiter = p.enqueue("job-1", "key-1", RouteRequest("m"), front=False)
    assert not waiter.fut.done()  # the only node is cooling down
    await asyncio.sleep(0.25)
    p.tick()
    assert waiter.fut.result() == node
