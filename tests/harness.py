"""A real network in the test's event loop: uvicorn + control plane + node daemons.

Nodes connect over a real WebSocket with signed frames; only the engines are fakes (or the
real embedded model). Use `async with Network.start(...) as net:`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from infernet.backends.base import Backend
from infernet.control import ControlPlane, Settings, create_app
from infernet.control.api.server import config as server_config
from infernet.hardware.tiers import TIER_GB, gib_floor
from infernet.node.daemon import Node
from infernet.protocol import keys

ADMIN_KEY = "inf-test-admin-key"
# What a node with one RTX 4090 advertises (`hardware.summary()`), for nodes on fake engines.
GPU_BOX: dict[str, Any] = {
    "gpus": [{"vendor": "nvidia", "name": "NVIDIA GeForce RTX 4090", "vram_mb": 24564, "driver": "550.54", "tier": ">=24gb"}],
    "cpu": "AMD Ryzen 9 7950X", "cpu_count": 32, "ram_mb": 65536, "os": "Ubuntu 24.04",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server(uvicorn.Server):
    def capture_signals(self):  # type: ignore[no-untyped-def]
        return contextlib.nullcontext()


def gpu_report(tier: str) -> dict[str, Any]:
    """The hardware summary of a machine with one NVIDIA card at the bottom of `tier`."""
    if tier not in TIER_GB:
        return {"gpus": []}
    return {"gpus": [{"vendor": "nvidia", "name": f"Test GPU {TIER_GB[tier]} GB", "vram_mb": gib_floor(TIER_GB[tier]), "tier": tier}]}


class HangableNode(Node):
    """A node daemon that can go silent while it stays connected, as a hung node does: no
    heartbeats, no frames, until `release`."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._held: list[Any] | None = None

    def hold(self) -> None:
        self._held = []

    def release(self) -> None:
        frames, self._held = self._held or [], None
        for frame in frames:
            super()._send(frame)

    def _send(self, frame: Any) -> None:
        if self._held is not None:
            self._held.append(frame)
        else:
            super()._send(frame)


@dataclass
class RunningNode:
    node: HangableNode
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def kill(self) -> None:
        """Vanish without a goodbye: cancel the daemon; its socket closes."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@dataclass
class Network:
    url: str
    cp: ControlPlane
    server: _Server
    serving: asyncio.Task[None]
    nodes: list[RunningNode] = field(default_factory=list)

    def client(self, key: str = ADMIN_KEY) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)

    async def add_node(
        self, backend: Backend, *, tier: str = "cpu", name: str = "", identity: keys.Identity | None = None, wait: bool = True,
        price: dict[str, int] | None = None, hardware: dict[str, Any] | None = None,
    ) -> RunningNode:
        """A node daemon; unless `hardware` says otherwise, it reports one GPU just big enough
        for `tier`, as an honest node of that tier would."""
        if hardware is None:
            hardware = gpu_report(tier)
        node = HangableNode(self.url, identity or keys.Identity.generate(), backend, name=name, tier=tier, price=price, hardware=hardware)
        stop = asyncio.Event()
        running = RunningNode(node, stop, asyncio.create_task(node.run(stop)))
        self.nodes.append(running)
        if wait:
            await self.wait_for(lambda: node.identity.pubkey in self.cp.sessions.nodes)
        return running

    async def funded_key(self, name: str, usdc: str = "10.00") -> str:
        """A new client API key with `usdc` on its balance."""
        async with self.client() as admin:
            rec = (await admin.post("/api/v1/keys", json={"name": name})).json()
            r = await admin.post(f"/api/v1/keys/{rec['id']}/credit", json={"amount": usdc})
            assert r.status_code == 200, r.text
        return rec["key"]

    @staticmethod
    async def hang_up_after(client: httpx.AsyncClient, body: dict[str, Any], events: int = 5) -> str:
        """Stream a chat completion, read `events` SSE events, then drop the connection as a
        client that goes away would. Returns the job id."""
        job_id = ""
        async with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
            seen = 0
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    seen += 1
                    job_id = json.loads(line[6:])["id"]
                    if seen == events:
                        break
        return job_id

    async def wait_for(self, cond: Any, timeout: float = 20.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not cond():
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("condition not met in time")
            await asyncio.sleep(0.01)

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, db_url: str | None = None, tmp: Path | None = None, settings: Settings | None = None, redis_url: str | None = None) -> AsyncIterator[Network]:
        if db_url is None:
            assert tmp is not None, "pass a db_url or a tmp path"
            db_url = f"sqlite:///{tmp / 'control.db'}"
        cp = await ControlPlane.open(db_url, settings or Settings(heartbeat_s=0.5), data_dir=tmp, redis_url=redis_url)
        port = free_port()
        server = _Server(server_config(create_app(cp, admin_key=ADMIN_KEY), port=port, timeout_graceful_shutdown=1))
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.01)
        net = cls(f"http://127.0.0.1:{port}", cp, server, serving)
        try:
            yield net
        finally:
            for n in net.nodes:
                n.stop.set()
            await asyncio.gather(*(n.task for n in net.nodes), return_exceptions=True)
            # A test may have swapped in a restarted server: stop whichever runs now.
            net.server.should_exit = True
            await net.serving
