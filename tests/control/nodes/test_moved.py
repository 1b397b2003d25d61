"""A node that reconnects to another replica leaves this one at once (a partition sends no
close), and this replica's own reconnects are not mistaken for a move."""

from __future__ import annotations

import asyncio

from infernet.control.bus import LocalBus, NodeGone, NodeSeen
from infernet.control.nodes.sessions import NodeConn, NodeSessions
from infernet.protocol.messages import Hello, ModelAd


class DeadSocket:
    def __init__(self) -> None:
        self.closed_with: int | None = None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed_with = code


def conn(node_id: str, session: bytes, replica: str) -> NodeConn:
    hello = Hello(pubkey=node_id, backend="fake", models=[ModelAd(name="m")], capacity=2, tier="cpu")
    return NodeConn(DeadSocket(), hello, session, replica)  # type: ignore[arg-type]


async def test_a_node_seen_on_another_replica_is_let_go_here_without_waiting_for_the_reaper():
    bus = LocalBus("r-a")
    heard: list = []
    bus.watch(heard.append)
    sessions = NodeSessions(None, bus, heartbeat_s=10)  # type: ignore[arg-type]
    here = conn("n1" * 32, b"\x01" * 16, "r-a")
    here.active.add("job-1")
    sessions.nodes[here.id] = here
    bus.announce(NodeSeen(conn(here.id, b"\x01" * 16, "r-a").info()))  # our own news: kept
    assert sessions.nodes.get(here.id) is here
    moved = conn(here.id, b"\x02" * 16, "r-b").info()
    bus.announce(NodeSeen(moved))  # the node said hello to r-b
    await asyncio.sleep(0)
    assert here.id not in sessions.nodes and here.closed
    assert here.ws.closed_with == 4409
    gone = [m for m in heard if isinstance(m, NodeGone)]
    assert [(g.session, g.busy) for g in gone] == [(("01" * 16), True)]  # the old session's jobs are lost
