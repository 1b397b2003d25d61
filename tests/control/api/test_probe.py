"""The probe endpoints, and the node's real tier reaching the control plane's node list."""

from __future__ import annotations

import asyncio

import httpx

from infernet import backends, node
from infernet.backends.fake import FakeBackend
from infernet.client.probe import UPLOAD, WHOAMI, measure_link, whoami
from infernet.control.api.probe import MAX_UPLOAD
from infernet.protocol import auth, keys
from tests.hardware.fakes import FakeTools
from tests.harness import ADMIN_KEY, Network


async def test_link_measurement_against_a_real_control_plane(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        link = await asyncio.to_thread(measure_link, net.url)
    assert link["error"] is None
    assert 0 < link["latency_ms"] < 1000 and link["jitter_ms"] >= 0
    assert link["upload_mbps"] > 0
    assert link["client_ip"] == "127.0.0.1"


async def test_link_to_nothing_is_an_error_not_a_crash():
    link = await asyncio.to_thread(measure_link, "http://127.0.0.1:9")
    assert link["error"] and link["latency_ms"] is None


async def test_upload_is_bounded(tmp_path):
    async with Network.start(tmp=tmp_path) as net, httpx.AsyncClient(base_url=net.url) as c:
        r = await c.post(UPLOAD, content=b"x" * (MAX_UPLOAD + 1))
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


async def test_whoami_needs_the_nodes_signature(tmp_path):
    async with Network.start(tmp=tmp_path) as net, httpx.AsyncClient(base_url=net.url) as c:
        r = await c.get(WHOAMI)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        ident = keys.Identity.generate()
        header = auth.sign_request(ident, "GET", WHOAMI)
        r = await c.get(WHOAMI, headers={auth.AUTH_HEADER: header})
        assert r.status_code == 200 and r.json()["registered"] is False and r.json()["online"] is False
        r = await c.get(WHOAMI, headers={auth.AUTH_HEADER: header})  # the same header again
        assert r.status_code == 401 and "replayed" in r.json()["error"]["message"]


async def test_whoami_counts_heartbeats(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        ident = keys.Identity.generate()
        await net.add_node(FakeBackend(), tier=">=12gb", name="n1", identity=ident)
        await net.wait_for(lambda: net.cp.sessions.nodes[ident.pubkey].heartbeats >= 1)
        me = await asyncio.to_thread(whoami, net.url, ident)
    assert me["registered"] and me["online"] and me["tier"] == ">=12gb" and me["name"] == "n1"
    assert me["heartbeats"] >= 1 and me["models"] == ["fake-model"]


async def test_registration_carries_the_detected_tier(tmp_path, monkeypatch):
    tools = FakeTools(tmp_path / "bin")
    tools.nvidia("rtx-4090.csv")
    monkeypatch.setenv("PATH", f"{tools.bin}:/usr/bin:/bin")
    monkeypatch.setattr(backends, "create", lambda *a, **k: FakeBackend())
    async with Network.start(tmp=tmp_path) as net:
        stop = asyncio.Event()
        task = asyncio.create_task(node.serve(net.url, backend_kind="fake", name="gpu-box", home=tmp_path / "home", stop=stop))
        try:
            await net.wait_for(lambda: len(net.cp.sessions.nodes) == 1)
            async with net.client(ADMIN_KEY) as c:
                rows = (await c.get("/api/v1/nodes")).json()["data"]
        finally:
            stop.set()
            await task
    row = rows[0]
    assert row["name"] == "gpu-box" and row["tier"] == ">=24gb"
    assert row["hardware"]["gpus"][0]["name"] == "NVIDIA GeForce RTX 4090"
    assert row["hardware"]["gpus"][0]["vram_mb"] == 24564
