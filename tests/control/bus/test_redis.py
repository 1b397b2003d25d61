"""The Redis bus between replicas: each message reaches the replica that holds its node or
drives its job, the fleet view is shared, and a replica that goes away takes its nodes with
it. Two buses in one test stand for two replicas (real Redis on 127.0.0.1:6379)."""

from __future__ import annotations

import asyncio
import contextlib

from infernet.control.bus import (
    NodeGone,
    NodeInfo,
    NodeSeen,
    Reserve,
)
from infernet.control.bus.redis import RedisBus
from infernet.protocol.messages import ModelAd
from tests.control.bus.sides import Side, until


def node(node_id: str, replica: str, session: str = "s1") -> NodeInfo:
    return NodeInfo(node_id=node_id, models=(ModelAd(name="m"),), tier="cpu", capacity=2, session=session, replica=replica)


@contextlib.asynccontextmanager
async def replica(redis_url: str, name: str):
    bus = RedisBus(redis_url, replica=name)
    seen: list = []
    bus.watch(seen.append)
    side = Side()
    bus.serve(side)
    await bus.start()
    try:
        yield bus, side, seen
    finally:
        await bus.aclose()


async def test_a_replica_that_starts_later_routes_over_the_whole_fleet(redis_url):
    async with replica(redis_url, "r-a") as (a, _, _):
        a.announce(NodeSeen(node("n1", "r-a")))
        await asyncio.sleep(0.2)  # the nodes hash is written behind the announcement
        async with replica(redis_url, "r-b") as (_, _, seen_b):
            assert [m.info.node_id for m in seen_b if isinstance(m, NodeSeen)] == ["n1"]


async def test_a_replica_that_goes_away_takes_its_nodes_with_it(redis_url):
    async with replica(redis_url, "r-b") as (b, _, seen_b):
        a = RedisBus(redis_url, replica="r-a")
        a.serve(Side())
        await a.start()
        a.announce(NodeSeen(node("n1", "r-a", "sess-1")))
        await until(lambda: any(isinstance(m, NodeSeen) for m in seen_b))
        for task in a._tasks:  # the process dies: no more beats, nothing said
            task.cancel()
        await until(lambda: any(isinstance(m, NodeGone) for m in seen_b), timeout=10)
        gone = next(m for m in seen_b if isinstance(m, NodeGone))
        assert (gone.node_id, gone.session, gone.busy) == ("n1", "sess-1", True)
        assert await b.send(Reserve("n1", "job-1")) is False
        await a._r.aclose()


async def test_a_reconnect_elsewhere_replaces_the_old_session(redis_url):
    async with replica(redis_url, "r-a") as (a, _, _), replica(redis_url, "r-b") as (b, side_b, seen_b):
        a.announce(NodeSeen(node("n1", "r-a", "old")))
        await until(lambda: len(seen_b) == 1)
        b.announce(NodeSeen(node("n1", "r-b", "new")))  # the node moved to r-b
        a.announce(NodeGone("n1", "old", "node disconnected", busy=False))  # r-a hears its old socket close
        await asyncio.sleep(0.3)
        assert await a.send(Reserve("n1", "job-1")) is True and side_b.active == {"job-1"}


async def test_a_replica_taken_for_gone_announces_its_nodes_again_when_it_is_back(redis_url):
    async with replica(redis_url, "r-b") as (b, _, seen_b):
        a = RedisBus(redis_url, replica="r-a")
        a.serve(Side())
        await a.start()
        a.announce(NodeSeen(node("n1", "r-a", "sess-1")))
        await until(lambda: any(isinstance(m, NodeSeen) for m in seen_b))
        a._tasks[3].cancel()  # r-a stalls: no beat (its other tasks still read and write)
        await a._r.delete(a._k("replica", "r-a"))  # ... past ALIVE_S: its key ran out
        await until(lambda: any(isinstance(m, NodeGone) for m in seen_b), timeout=10)
        assert await b.send(Reserve("n1", "job-1")) is False  # r-b routes around n1 now
        await a._beat()  # r-a's loop comes back
        await until(lambda: isinstance(seen_b[-1], NodeSeen), timeout=10)
        assert await b.send(Reserve("n1", "job-1")) is True  # n1 is back in r-b's view
        await a.aclose()
