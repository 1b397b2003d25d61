"""The Redis client under load and at shutdown: a burst past the connection pool waits for a
connection, and closing a bus never hangs (real Redis on 127.0.0.1:6379)."""

from __future__ import annotations

import asyncio

from infernet.control.bus import NodeInfo, NodeSeen
from infernet.control.bus.redis import RedisBus
from infernet.control.store.redis import connect
from infernet.protocol.messages import ModelAd


class Side:
    async def handle(self, msg) -> bool:
        return True


async def test_a_burst_past_the_pool_waits_for_a_connection_instead_of_failing(redis_url):
    r, prefix = connect(redis_url, max_connections=2)
    try:
        # Six blocking reads at once on two connections: each waits its turn.
        got = await asyncio.gather(*(r.blpop([f"{prefix}:empty:{i}"], timeout=0.2) for i in range(6)))
        assert got == [None] * 6
    finally:
        await r.aclose()


async def test_closing_does_not_hang_on_a_redis_that_stopped_answering(redis_url):
    bus = RedisBus(redis_url, replica="r-stuck")
    bus.serve(Side())
    await bus.start()
    bus.announce(NodeSeen(NodeInfo(node_id="n1", models=(ModelAd(name="m"),), tier="cpu", capacity=2, session="s1", replica="r-stuck")))

    async def never() -> None:  # what a write to an unreachable Redis does
        await asyncio.sleep(3600)

    bus._flush = never  # type: ignore[method-assign]
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(bus.aclose(), 10)
    assert asyncio.get_running_loop().time() - started < 5
