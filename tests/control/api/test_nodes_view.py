"""`GET /api/v1/nodes`: live last_seen for online nodes, written to the store in batches;
an offline node is listed as such and offers no model."""

from __future__ import annotations

import asyncio
import time

from infernet.backends.fake import FakeBackend
from infernet.control import Settings
from tests.harness import Network


async def test_last_seen_is_live_and_written_in_batches(tmp_path):
    settings = Settings(heartbeat_s=0.3, last_seen_write_s=0.5)
    async with Network.start(tmp=tmp_path, settings=settings) as net:
        running = await net.add_node(FakeBackend())
        node_id = running.node.identity.pubkey
        first = (await net.cp.store.nodes.get(node_id))["last_seen"]
        # Heartbeats move last_seen; the store hears of it within a write interval or two.
        await net.wait_for(lambda: net.cp.sessions.nodes[node_id].heartbeats >= 3, timeout=10)
        deadline = time.monotonic() + 5
        while (await net.cp.store.nodes.get(node_id))["last_seen"] <= first:
            assert time.monotonic() < deadline, "last_seen never reached the store"
            await asyncio.sleep(0.1)
        async with net.client() as c:
            (n,) = (await c.get("/api/v1/nodes")).json()["data"]
        assert n["status"] == "online" and n["models"] == ["fake-model"]
        assert time.time() - n["last_seen"] < 1.0  # live, not the last write


async def test_an_offline_node_offers_nothing(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        running = await net.add_node(FakeBackend(models=("m1", "m2")))
        await running.kill()
        await net.wait_for(lambda: not net.cp.sessions.nodes)
        async with net.client() as c:
            (n,) = (await c.get("/api/v1/nodes")).json()["data"]
            models = (await c.get("/v1/models")).json()["data"]
        assert n["status"] == "offline" and n["models"] == [] and n["active"] == 0
        assert n["last_models"] == ["m1", "m2"]  # what it served, for the operator
        assert models == []


async def test_v1_models_says_the_context(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend())
        async with net.client() as c:
            (m,) = (await c.get("/v1/models")).json()["data"]
        assert m["id"] == "fake-model" and m["max_model_len"] == 4096 and m["nodes"] == 1


async def test_every_replica_lists_a_node_online_wherever_its_socket_is(pg_url, redis_url, tmp_path):
    async with Network.start(db_url=pg_url, tmp=tmp_path, redis_url=redis_url) as a, Network.start(db_url=pg_url, tmp=tmp_path, redis_url=redis_url) as b:
        running = await a.add_node(FakeBackend(models=("m1",)))
        node_id = running.node.identity.pubkey
        await b.wait_for(lambda: node_id in b.cp.placement.infos, timeout=10)
        async with b.client() as c:
            (n,) = (await c.get("/api/v1/nodes")).json()["data"]
            one = (await c.get(f"/api/v1/nodes/{node_id}")).json()
        assert (n["status"], n["models"], n["replica"]) == ("online", ["m1"], a.cp.bus.replica)
        assert one["status"] == "online" and one["capacity"] == n["capacity"] >= 1
        async with a.client() as c:
            (here,) = (await c.get("/api/v1/nodes")).json()["data"]
        assert (here["status"], here["replica"]) == ("online", a.cp.bus.replica)
        await running.kill()
        await b.wait_for(lambda: node_id not in b.cp.placement.infos, timeout=15)
        async with b.client() as c:
            (n,) = (await c.get("/api/v1/nodes")).json()["data"]
        assert n["status"] == "offline" and n["models"] == []
