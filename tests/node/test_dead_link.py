"""A control plane cut off by the network (no close, no reset: its packets just stop) is
left within two ping intervals and a short close, not websockets' 10 s closing wait."""

from __future__ import annotations

import asyncio
import os
import time

import websockets

from infernet.backends.fake import FakeBackend
from infernet.node import daemon
from infernet.node.daemon import Node
from infernet.protocol import auth, keys
from infernet.protocol.messages import Welcome, encode


async def test_a_replica_that_goes_silent_is_left_within_seconds(monkeypatch):
    monkeypatch.setattr(daemon, "PING_S", 0.5)
    ident = keys.Identity.generate()
    done = asyncio.Event()

    async def silent(ws):  # welcome the node, then hear nothing more: no pong, no close
        await ws.send(encode(Welcome(session=os.urandom(16).hex(), ephemeral=auth.ephemeral()[1], node_id=ident.pubkey, heartbeat_s=30)).decode())
        ws.transport.pause_reading()
        await done.wait()
        ws.transport.abort()

    async with websockets.serve(silent, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        node = Node(f"http://127.0.0.1:{port}", ident, FakeBackend())
        stop = asyncio.Event()
        task = asyncio.create_task(node.run(stop))
        try:
            while not node.status.connected:
                await asyncio.sleep(0.01)
            since = time.monotonic()
            while node.status.connected and time.monotonic() - since < 15:
                await asyncio.sleep(0.05)
            took = time.monotonic() - since
        finally:
            done.set()
            stop.set()
            await task
    # ping every 0.5 s, 0.5 s for its pong, CLOSE_S for the close: well under websockets' 10 s
    assert took < 2 * 0.5 + daemon.CLOSE_S + 1.0, took
    assert "keepalive ping timeout" in node.status.last_error
