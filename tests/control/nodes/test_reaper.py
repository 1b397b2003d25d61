"""The reaper drops nodes silent past their heartbeats, but not for a stall of its own."""

from __future__ import annotations

import time

from infernet.control.bus import LocalBus
from infernet.control.nodes.sessions import NodeSessions
from tests.control.nodes.test_moved import conn


class Repo:
    async def upsert_many(self, rows):
        pass

    async def set_offline(self, ids):
        pass


class Store:
    nodes = Repo()


async def test_a_silent_node_is_dropped_but_not_for_the_replicas_own_stall():
    sessions = NodeSessions(Store(), LocalBus("r-a"), heartbeat_s=1.0, missed_heartbeats=3)  # type: ignore[arg-type]
    node = conn("a" * 64, b"\x01" * 16, "r-a")
    sessions.nodes[node.id] = node
    now = time.monotonic()
    node.last_seen = now - 10  # its frames sat unread while this replica's loop was stuck
    sessions._reaped_at = now - 12
    sessions.reap()
    assert node.id in sessions.nodes
    sessions.reap()  # the next round, a second later: the stall was credited to the node
    assert node.id in sessions.nodes
    node.last_seen = time.monotonic() - 4  # silent past 3 heartbeats of our awake time
    sessions.reap()
    assert node.id not in sessions.nodes and node.closed
    await sessions.aclose()
