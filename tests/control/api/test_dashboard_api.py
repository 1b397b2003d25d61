"""The reads the dashboard needs, through a real network on fake engines: the network's jobs
for an admin and only its own for a client, job events, one node, balance history, the live
feed, and the page's assets."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from infernet.backends.fake import FakeBackend
from infernet.control import Settings
from tests.harness import GPU_BOX, Network

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "a b c"}]}


def fast() -> Settings:
    return Settings(heartbeat_s=0.5, dashboard_tick_s=0.05)


async def chat(c: httpx.AsyncClient, body: dict[str, Any] = CHAT) -> dict[str, Any]:
    r = await c.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def assert_bad(r: httpx.Response, param: str) -> None:
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error" and err["message"]


async def feed(c: httpx.AsyncClient, n: int) -> list[tuple[str, dict[str, Any]]]:
    """The first `n` events of the live feed."""
    out: list[tuple[str, dict[str, Any]]] = []
    async with c.stream("GET", "/api/v1/events") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        name = ""
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                out.append((name, json.loads(line[6:])))
                if len(out) == n or name == "error":
                    break
    return out


async def test_admin_lists_the_network_and_a_client_only_its_own(tmp_path):
    async with Network.start(tmp=tmp_path, settings=fast()) as net:
        await net.add_node(FakeBackend(reply="one two"))
        alice, bob = await net.funded_key("alice"), await net.funded_key("bob")
        async with net.client(alice) as a, net.client(bob) as b, net.client() as admin:
            mine = (await chat(a))["id"]
            theirs = (await chat(b))["id"]
            assert {j["id"] for j in (await admin.get("/api/v1/jobs", params={"all": 1})).json()["data"]} >= {mine, theirs}
            assert (await admin.get("/api/v1/jobs")).json()["data"] == []  # without all=1: the admin's own
            for params in ({}, {"all": 1}, {"all": "true"}):
                listed = (await a.get("/api/v1/jobs", params=params)).json()["data"]
                assert [j["id"] for j in listed] == [mine]
            # a client naming another key still gets only its own
            bob_key = (await b.get("/api/v1/jobs")).json()["data"][0]["key_id"]
            assert [j["id"] for j in (await a.get("/api/v1/jobs", params={"key": bob_key, "all": 1})).json()["data"]] == [mine]
            assert [j["id"] for j in (await admin.get("/api/v1/jobs", params={"key": bob_key})).json()["data"]] == [theirs]
            # and cannot open its job, events or receipt
            for path in (f"/api/v1/jobs/{theirs}", f"/api/v1/jobs/{theirs}/events", f"/api/v1/jobs/{theirs}/receipt"):
                assert (await a.get(path)).status_code == 404


async def test_filters_by_status_model_and_node_and_failed_jobs_carry_their_error(tmp_path):
    async with Network.start(tmp=tmp_path, settings=fast()) as net:
        good = await net.add_node(FakeBackend(("fake-model",), reply="fine"))
        await net.add_node(FakeBackend(("other-model",), reply="one two three", fail="engine fell over", fail_after=1))
        async with net.client() as c:
            ok = (await chat(c))["id"]
            r = await c.post("/v1/chat/completions", json={**CHAT, "model": "other-model", "stream": True})
            assert r.status_code == 200
            jobs = (await c.get("/api/v1/jobs", params={"all": 1, "status": "failed"})).json()["data"]
            assert len(jobs) == 1 and jobs[0]["model"] == "other-model"
            assert "engine fell over" in jobs[0]["error"]["message"]
            assert [j["id"] for j in (await c.get("/api/v1/jobs", params={"all": 1, "model": "fake-model"})).json()["data"]] == [ok]
            by_node = (await c.get("/api/v1/jobs", params={"all": 1, "node": good.node.identity.pubkey})).json()["data"]
            assert [j["id"] for j in by_node] == [ok]
            assert (await c.get("/api/v1/jobs", params={"all": 1, "status": "completed", "model": "other-model"})).json()["data"] == []


async def test_pages_of_jobs_with_limit_and_before(tmp_path):
    async with Network.start(tmp=tmp_path, settings=fast()) as net:
        await net.add_node(FakeBackend(reply="x"))
        async with net.client() as c:
            ids = [(await chat(c))["id"] for _ in range(5)]
            first = (await c.get("/api/v1/jobs", params={"limit": 2})).json()
            assert [j["id"] for j in first["data"]] == ids[::-1][:2] and first["has_more"]
            rest = (await c.get("/api/v1/jobs", params={"limit": 10, "before": first["data"][-1]["created_at"]})).json()
            assert [j["id"] for j in rest["data"]] == ids[::-1][2:] and not rest["has_more"]


@pytest.mark.parametrize(("path", "params", "param"), [
    ("/api/v1/jobs", {"limit": 0}, "limit"),
    ("/api/v1/jobs", {"limit": 201}, "limit"),
    ("/api/v1/jobs", {"limit": "ten"}, "limit"),
    ("/api/v1/jobs", {"status": "exploded"}, "status"),
    ("/api/v1/jobs", {"model": "m" * 201}, "model"),
    ("/api/v1/jobs", {"node": "not-hex"}, "node"),
    ("/api/v1/jobs", {"key": "../etc"}, "key"),
    ("/api/v1/jobs", {"before": "nan"}, "before"),
    ("/api/v1/jobs", {"all": "maybe"}, "all"),
    ("/api/v1/balance/history", {"hours": 0}, "hours"),
    ("/api/v1/balance/history", {"hours": 10_000}, "hours"),
    ("/api/v1/balance/history", {"key_id": "x" * 500}, "key_id"),
    ("/api/v1/balance", {"key_id": "bad key"}, "key_id"),
    ("/api/v1/nodes/zz", {}, "node_id"),
    ("/api/v1/nodes/" + "a" * 64, {"jobs": 1000}, "jobs"),
])
async def test_every_query_parameter_is_bounded(tmp_path, path, params, param):
    async with Network.start(tmp=tmp_path, settings=fast()) as net:
        node = await net.add_node(FakeBackend())
        path = path.replace("a" * 64, node.node.identity.pubkey)
        async with net.client() as c:
            assert_bad(await c.get(path, params=params), param)


async def test_job_events_are_read_from_the_store_once_the_job_ended(tmp_path):
    async with Network.start(tmp=tmp_path, settings=fast()) as net:
        await net.add_node(FakeBackend(reply="alpha beta gamma"))
        async with net.client() as c:
            job = (await chat(c))["id"]
            await net.cp.driver.settled()
            events = (await c.get(f"/api/v1/jobs/{job}/events")).json()
            assert events["job_id"] == job and not events["has_more"]
            types = [e["type"] for e in events["data"]]
            assert types[-1] == "done" and set(types[:-1]) == {"token"}
            assert "".join(e["data"]["text"] for e in events["data"] if e["type"] == "token") == "alpha beta gamma"
            assert events["data"][-1]["data"]["usage"]["completion_tokens"] == 3
            assert [e["seq"] for e in events["data"]] == list(range(1, len(types) + 1))
            later = (await c.get(f"/api/v1/jobs/{job}/events", params={"after": 1, "limit": 1})).json()
            assert [e["seq"] for e in later["data"]] == [2] and later["has_more"]


async def test_one_node_with_its_speed_reputation_uptime_earnings_and_recent_jobs(tmp_path):
    async with Network.start(tmp=tmp_path, settings=fast()) as net:
        running = await net.add_node(FakeBackend(reply="w " * 40, delay_s=0.001), tier=">=24gb")
        node_id = running.node.identity.pubkey
        alice = await net.funded_key("alice")
        async with net.client(alice) as a, net.client() as admin:
            await chat(a)
            await chat(admin)
            await net.cp.driver.settled()
            seen = (await admin.get(f"/api/v1/nodes/{node_id}")).json()
            assert seen["status"] == "online" and seen["tier"] == ">=24gb" and seen["uptime_s"] >= 0
            assert seen["expected_tps"] == {"low": 15.0, "high": 80.0}
            assert seen["measured"]["tokens_per_s"] > 0 and seen["speed"] in ("below", "within", "above")
            assert 0 < seen["reputation"] <= 1
            assert seen["earnings"]["receipts"] == 2 and int(seen["earnings"]["earned"]) > 0
            assert len(seen["recent_jobs"]) == 2
            as_client = (await a.get(f"/api/v1/nodes/{node_id}")).json()
            assert "earnings" not in as_client and len(as_client["recent_jobs"]) == 1
            assert as_client["recent_jobs"][0]["key_id"] != (await admin.get("/api/v1/jobs")).json()["data"][0]["key_id"]
            listed = (await admin.get("/api/v1/nodes")).json()["data"]
            assert listed[0]["earnings"]["receipts"] == 2 and listed[0]["reputation"] == seen["reputation"]
            assert "earnings" not in (await a.get("/api/v1/nodes")).json()["data"][0]
            assert (await admin.get("/api/v1/nodes/" + "0" * 64)).status_code == 404


async def test_a_node_shows_the_gpus_it_advertised(tmp_path):
    async with Network.start(tmp=tmp_path, settings=fast()) as net:
        running = await net.add_node(FakeBackend(), tier=">=24gb", hardware=GPU_BOX)
        async with net.client() as c:
            seen = (await c.get(f"/api/v1/nodes/{running.node.identity.pubkey}")).json()
        assert seen["vendor"] == "nvidia" and seen["hardware"]["gpus"][0]["vram_mb"] == 24564


async def test_balance_history_shows_spend_balance_and_holds(tmp_path):
    async with Network.start(tmp=tmp_path, settings=fast()) as net:
        await net.add_node(FakeBackend(reply="one two three"))
        alice = await net.funded_key("alice", "5.00")
        async with net.client(alice) as a, net.client() as admin:
            for _ in range(3):
                await chat(a)
            await net.cp.driver.settled()
            h = (await a.get("/api/v1/balance/history", params={"hours": 6})).json()
            assert h["period_s"] == 3600 and len(h["spend"]) in (6, 7)
            charged = sum(p["charged"] for p in h["spend"])
            assert sum(p["jobs"] for p in h["spend"]) == 3 and charged == h["spent"] > 0
            assert h["balance"][-1]["balance"] == h["available"] == 5_000_000 - charged
            assert h["holds"] == [] and h["held"] == 0
            daily = (await a.get("/api/v1/balance/history", params={"hours": 24 * 7})).json()
            assert daily["period_s"] == 86_400 and daily["balance"][-1]["balance"] == h["available"]
            key_id = h["key_id"]
            assert (await admin.get("/api/v1/balance/history", params={"key_id": key_id})).json()["spent"] == charged
            admin_id = (await admin.get("/api/v1/balance")).json()["key_id"]
            assert (await a.get("/api/v1/balance/history", params={"key_id": admin_id})).status_code == 403
            keys = {k["id"]: k for k in (await admin.get("/api/v1/keys")).json()["data"]}
            assert keys[key_id]["held"] == "0.000000" and int(keys[key_id]["spent"].replace(".", "")) == charged


async def test_the_live_feed_starts_with_the_hour_then_sends_what_changed(tmp_path):
    async with Network.start(tmp=tmp_path, settings=fast()) as net:
        await net.add_node(FakeBackend(reply="one two"), tier=">=24gb", hardware=GPU_BOX)
        net.cp.sample()
        async with net.client() as c:
            await chat(c)
            events = await feed(c, 3)
        first, later = events[0][1], events[2][1]
        assert [name for name, _ in events] == ["snapshot"] * 3
        assert first["scope"] == "network" and len(first["series"]) == 360
        assert first["fleet"] == {"online": 1, "by_tier": {">=24gb": 1}, "by_vendor": {"nvidia": 1}, "slots": 4, "busy": 0}
        assert first["ended"] == 1 and first["series"][-1]["jobs_per_min"] == 1.0
        assert first["series"][-1]["tiers"] == {">=24gb": 1}
        assert 1 <= len(later["series"]) <= 2 and later["series"][0]["t"] >= first["series"][-1]["t"]


async def test_a_clients_feed_shows_its_own_jobs_and_ends_when_its_key_is_revoked(tmp_path):
    async with Network.start(tmp=tmp_path, settings=fast()) as net:
        await net.add_node(FakeBackend(reply="one two"))
        alice, bob = await net.funded_key("alice"), await net.funded_key("bob")
        async with net.client(alice) as a, net.client(bob) as b, net.client() as admin:
            await chat(b)
            (_, snap), = await feed(a, 1)
            assert snap["scope"] == "key" and snap["ended"] == 0 and snap["series"][-1]["jobs_per_min"] == 0
            assert snap["fleet"]["online"] == 1
            await chat(a)
            (_, snap), = await feed(a, 1)
            assert snap["ended"] == 1
            key_id = snap["key"]["id"]
            net.cp.settings.dashboard_tick_s = 0.5
            async with a.stream("GET", "/api/v1/events") as r:
                lines = r.aiter_lines()
                async for line in lines:
                    if line.startswith("event: snapshot"):
                        break
                assert (await admin.delete(f"/api/v1/keys/{key_id}")).status_code == 200
                net.cp.store.keys.forget()
                rest = [line async for line in lines]
            assert "event: error" in rest and any('"invalid_api_key"' in line for line in rest)


async def test_a_job_in_flight_is_in_the_feed(tmp_path):
    async with Network.start(tmp=tmp_path, settings=fast()) as net:
        await net.add_node(FakeBackend(reply="w " * 200, delay_s=0.02))
        async with net.client() as c, c.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
            await r.aiter_lines().__anext__()
            (_, snap), = await feed(c, 1)
        assert snap["live_total"] == 1 and snap["live"][0]["status"] in ("assigned", "running")


async def test_the_page_and_its_assets_are_local_and_locked_down(tmp_path):
    async with Network.start(tmp=tmp_path, settings=fast()) as net, httpx.AsyncClient(base_url=net.url) as c:
        page = await c.get("/dashboard")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "default-src 'none'" in csp
        assert "http://" not in page.text and "https://" not in page.text  # no CDN
        app = await c.get("/dashboard/assets/app.js")
        assert app.status_code == 200 and "javascript" in app.headers["content-type"]
        assert app.headers["x-content-type-options"] == "nosniff"
        missing = await c.get("/dashboard/assets/nope.js")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert (await c.get("/dashboard/assets/../control/api/app.py")).status_code == 404
        assert (await c.get("/api/v1/events")).status_code == 401
