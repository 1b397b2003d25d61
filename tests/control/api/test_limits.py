"""Every number and every byte a client sends is bounded at the edge: a clear 4xx, never a
500, and nothing reaches the database or another client's job."""

from __future__ import annotations

import asyncio

import pytest

from infernet.backends.fake import FakeBackend
from infernet.control.api import server
from tests.control.money.books import funded_key
from tests.harness import Network

ASK = {"model": "fake-model", "messages": [{"role": "user", "content": "x"}]}


@pytest.mark.parametrize("field, value", [
    ("max_tokens", 10**30), ("max_completion_tokens", 2**63), ("max_tokens", 10_000_000), ("seed", 2**64), ("seed", -(2**64)),
    ("temperature", 1e308), ("stop", ["x" * 5000]), ("n", 2), ("presence_penalty", "high"), ("presence_penalty", 5),
    ("frequency_penalty", -2.5), ("top_logprobs", 21), ("logit_bias", {"1": 200}), ("logit_bias", {"a": 1}),
])
async def test_out_of_range_numbers_are_400_naming_the_parameter(tmp_path, field, value):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend())
        async with net.client() as c:
            r = await c.post("/v1/chat/completions", json={**ASK, field: value})
            assert r.status_code == 400, r.text
            assert r.json()["error"]["param"] == field, r.text
            assert (await c.post("/v1/chat/completions", json=ASK)).status_code == 200


async def test_max_completion_tokens_wins_and_everything_reads_that_one_cap(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        engine = FakeBackend(reply=" ".join(["w"] * 300))
        await net.add_node(engine)
        async with net.client() as admin:
            key = await funded_key(admin, "5.00")
        async with net.client(key["key"]) as c:
            r = await c.post("/v1/chat/completions", json={**ASK, "max_tokens": 200, "max_completion_tokens": 5})
            assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 5
            job_id = r.json()["id"]
            receipt = (await c.get(f"/api/v1/jobs/{job_id}/receipt")).json()
        assert receipt["settlement"]["output_tokens"] == 5 and receipt["settlement"]["price"] > 0


@pytest.mark.parametrize("path, body, param", [
    ("/api/v1/keys", {"name": "x", "spend_limit": "99999999999999999999"}, "spend_limit"),
    ("/api/v1/keys", {"name": "x", "spend_limit": "abc"}, "spend_limit"),
    ("/api/v1/keys", {"name": "x", "rate_limit": 2**64}, "rate_limit"),
    ("/api/v1/keys", {"name": "x", "spend_limit": 2**70}, "spend_limit"),
])
async def test_key_limits_beyond_the_books_are_refused_and_create_nothing(tmp_path, path, body, param):
    async with Network.start(tmp=tmp_path) as net:
        async with net.client() as admin:
            before = len((await admin.get("/api/v1/keys")).json()["data"])
            r = await admin.post(path, json=body)
            assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
            assert len((await admin.get("/api/v1/keys")).json()["data"]) == before


async def test_huge_credits_tables_and_event_ids_are_400(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend())
        async with net.client() as admin:
            key = await funded_key(admin, "1.00")
            for amount in ("99999999999999999999", 10**20):
                r = await admin.post(f"/api/v1/keys/{key['id']}/credit", json={"amount": amount})
                assert r.status_code == 400 and r.json()["error"]["param"] == "amount", r.text
            for _ in range(2):  # many large credits may not add up past what the books hold
                r = await admin.post(f"/api/v1/keys/{key['id']}/credit", json={"amount": "600000000"})
            assert r.status_code == 400 and r.json()["error"]["param"] == "amount"
            table = (await admin.get("/api/v1/pricing")).json()
            table = {k: v for k, v in table.items() if k not in ("object", "unit")}
            for bad in ({"min_balance": 2**70}, {"default_output_cap": 2**40}, {"tiers": {"cpu": {"input": 2**62, "output": 1}}}):
                r = await admin.put("/api/v1/pricing", json={**table, **bad})
                assert r.status_code == 400, (bad, r.text)
            r = await admin.post("/v1/chat/completions", json=ASK)  # every funded request still works
            assert r.status_code == 200
            job_id = r.json()["id"]
            for last in (str(2**63), "-1", "1e3", "x"):
                r = await admin.get(f"/api/v1/jobs/{job_id}/stream", headers={"Last-Event-ID": last})
                assert r.status_code == 400 and r.json()["error"]["param"] == "Last-Event-ID"
            r = await admin.get(f"/api/v1/jobs/{job_id}/stream", headers={"Last-Event-ID": "1"})
            assert r.status_code == 200 and "event: done" in r.text
            assert (await admin.get("/api/v1/ledger/check")).json()["ok"]


async def test_deep_json_is_400_and_the_connection_keeps_working(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend())
        async with net.client() as c:
            for depth in (1_000, 100_000):
                deep = b'{"model":"fake-model","messages":[{"role":"user","content":"x"}],"extra":' + b"[" * depth + b"]" * depth + b"}"
                r = await c.post("/v1/chat/completions", content=deep, headers={"content-type": "application/json"})
                assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", r.text[:200]
                r = await c.post("/v1/chat/completions", json=ASK)  # the same connection
                assert r.status_code == 200


async def _raw(url: str, payload: bytes) -> tuple[float, bytes]:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(payload)
    await writer.drain()
    t0 = asyncio.get_running_loop().time()
    data = await asyncio.wait_for(reader.read(200), 10)
    writer.close()
    return asyncio.get_running_loop().time() - t0, data


async def test_slow_or_oversized_request_heads_are_cut_off(tmp_path, monkeypatch):
    monkeypatch.setattr(server, "HEAD_TIMEOUT_S", 0.5)
    async with Network.start(tmp=tmp_path) as net:
        took, data = await _raw(net.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finishes its head
        assert data.startswith(b"HTTP/1.1 408") and took < 3
        took, data = await _raw(net.url, b"")
        assert data.startswith(b"HTTP/1.1 408") and took < 3
        upgrade = (
            b"GET /api/v1/nodes/connect HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-Infernet-Auth: " + b"x" * 20_000 + b"\r\n\r\n"
        )
        took, data = await _raw(net.url, upgrade)
        assert data.startswith(b"HTTP/1.1 431") and took < 1
        took, data = await _raw(net.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-A: " + b"y" * 6000 + b"\r\n" * 1 + b"".join(b"X-%d: %s\r\n" % (i, b"z" * 4000) for i in range(10)) + b"\r\n")
        assert data.startswith(b"HTTP/1.1 431")
        took, data = await _raw(net.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # a normal head still works
        assert data.startswith(b"HTTP/1.1 200")
