"""The relay through a real control plane and real node daemons, on fake engines."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from infernet.backends.fake import FakeBackend
from tests.harness import Network


async def _sse(resp: httpx.Response) -> list[dict]:
    out = []
    async for line in resp.aiter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[6:]))
    return out


async def test_chat_roundtrip_with_real_usage(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend(reply="one two three four"))
        async with net.client() as c:
            r = await c.post("/v1/chat/completions", json={"model": "fake-model", "messages": [{"role": "user", "content": "a b c"}]})
        assert r.status_code == 200
        body = r.json()
        assert body["choices"][0]["message"]["content"] == "one two three four"
        assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        assert body["choices"][0]["finish_reason"] == "stop"


async def test_stream_chunks_concatenate_and_usage_is_the_engines(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend(reply="alpha beta gamma delta epsilon", delay_s=0.005))
        async with net.client() as c, c.stream(
            "POST", "/v1/chat/completions",
            json={"model": "fake-model", "stream": True, "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": "x"}]},
        ) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            events = await _sse(r)
        text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
        assert text == "alpha beta gamma delta epsilon"
        assert events[0]["choices"][0]["delta"]["role"] == "assistant"
        assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 5
        assert events[-2]["choices"][0]["finish_reason"] == "stop"


async def test_max_tokens_reaches_the_engine(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend(reply="a b c d e f g"))
        async with net.client() as c:
            r = await c.post("/v1/chat/completions", json={"model": "fake-model", "max_tokens": 2, "messages": [{"role": "user", "content": "x"}]})
        assert r.json()["choices"][0]["message"]["content"] == "a b"
        assert r.json()["choices"][0]["finish_reason"] == "length"


async def test_unknown_model_is_404_and_no_node_is_503(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        async with net.client() as c:
            r = await c.post("/v1/chat/completions", json={"model": "fake-model", "messages": [{"role": "user", "content": "x"}]})
            assert r.status_code == 503 and r.json()["error"]["code"] == "no_nodes"
            await net.add_node(FakeBackend())
            r = await c.post("/v1/chat/completions", json={"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]})
            assert r.status_code == 404
            assert r.json()["error"] == {"message": r.json()["error"]["message"], "type": "invalid_request_error", "param": "model", "code": "model_not_found"}


@pytest.mark.parametrize(
    "payload, param",
    [
        (b"{not json", None),
        (b"", None),
        (b"[]", None),
        (json.dumps({"model": "fake-model", "messages": []}).encode(), "messages"),
        (json.dumps({"model": "fake-model", "messages": [{"role": "wizard", "content": "x"}]}).encode(), "messages"),
        (json.dumps({"model": "fake-model", "max_tokens": -3, "messages": [{"role": "user", "content": "x"}]}).encode(), "max_tokens"),
        (json.dumps({"model": "fake-model", "temperature": 9, "messages": [{"role": "user", "content": "x"}]}).encode(), "temperature"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(), None),
    ],
)
async def test_malformed_requests_are_400_in_openai_shape(tmp_path, payload, param):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend())
        async with net.client() as c:
            r = await c.post("/v1/chat/completions", content=payload, headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"}
        assert err["type"] == "invalid_request_error"
        if param:
            assert err["param"] == param


async def test_missing_and_bad_keys_are_401(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        async with httpx.AsyncClient(base_url=net.url) as c:
            assert (await c.get("/v1/models")).status_code == 401
            r = await c.get("/v1/models", headers={"Authorization": "Bearer nope"})
            assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


async def test_admin_creates_keys_and_clients_cannot(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend())
        async with net.client() as admin:
            r = await admin.post("/api/v1/keys", json={"name": "alice"})
            assert r.status_code == 201
            alice = r.json()
        async with net.client(alice["key"]) as c:
            assert (await c.get("/v1/models")).status_code == 200
            assert (await c.post("/api/v1/keys", json={})).status_code == 403
        async with net.client() as admin:
            assert (await admin.delete(f"/api/v1/keys/{alice['id']}")).status_code == 200
        net.cp.store.keys.forget()
        async with net.client(alice["key"]) as c:
            assert (await c.get("/v1/models")).status_code == 401


async def test_node_vanishing_mid_stream_gives_error_event_and_failed_job(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        node = await net.add_node(FakeBackend(reply=" ".join(["w"] * 200), delay_s=0.02))
        async with net.client() as c:
            async with c.stream("POST", "/v1/chat/completions", json={"model": "fake-model", "stream": True, "messages": [{"role": "user", "content": "x"}]}) as r:
                events = []
                async for line in r.aiter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        events.append(json.loads(line[6:]))
                        if len(events) == 5:
                            await node.kill()
            assert "error" in events[-1]
            assert events[-1]["error"]["code"] == "node_lost"
            job_id = events[0]["id"]
            job = (await c.get(f"/api/v1/jobs/{job_id}")).json()
            assert job["status"] == "failed"


async def test_node_dropping_before_first_token_is_retried_elsewhere(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend(fail="engine crashed"), name="bad")
        good = FakeBackend(reply="fine")
        await net.add_node(good, name="good")
        async with net.client() as c:
            for _ in range(4):
                r = await c.post("/v1/chat/completions", json={"model": "fake-model", "messages": [{"role": "user", "content": "x"}]})
                assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "fine"


async def test_client_disconnect_cancels_the_job_on_the_node(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        engine = FakeBackend(reply=" ".join(["w"] * 500), delay_s=0.01)
        await net.add_node(engine)
        async with net.client() as c:
            job_id = await net.hang_up_after(c, {"model": "fake-model", "messages": [{"role": "user", "content": "x"}]})
            await net.wait_for(lambda: engine.cancelled == 1)
            await net.wait_for(lambda: not net.cp.driver.jobs)
            job = (await c.get(f"/api/v1/jobs/{job_id}")).json()
            assert job["status"] == "cancelled"
            assert 0 < job["usage"]["completion_tokens"] < 500


async def test_job_api_and_reattach_with_last_event_id(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend(reply="a b c d e f", delay_s=0.01))
        async with net.client() as c:
            r = await c.post("/api/v1/jobs", json={"model": "fake-model", "messages": [{"role": "user", "content": "x"}]})
            assert r.status_code == 202
            job_id = r.json()["id"]
            first: list[str] = []
            async with c.stream("GET", f"/api/v1/jobs/{job_id}/stream") as s:
                async for line in s.aiter_lines():
                    if line.startswith("id: "):
                        first.append(line[4:])
                        if len(first) == 2:
                            break
            seen = []
            async with c.stream("GET", f"/api/v1/jobs/{job_id}/stream", headers={"Last-Event-ID": first[-1]}) as s:
                async for line in s.aiter_lines():
                    if line.startswith("data: "):
                        seen.append(json.loads(line[6:]))
            async with c.stream("GET", f"/api/v1/jobs/{job_id}/stream") as s:
                everything = [json.loads(line[6:]) async for line in s.aiter_lines() if line.startswith("data: ")]
            assert everything[len(first):] == seen
            text = "".join(e.get("text", "") for e in everything)
            assert text == "a b c d e f"
            job = (await c.get(f"/api/v1/jobs/{job_id}")).json()
            assert job["status"] == "completed" and job["result"]["text"] == "a b c d e f"
            assert job["usage"]["completion_tokens"] == 6


async def test_a_key_cannot_see_another_keys_job(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend())
        async with net.client() as admin:
            bob_rec = (await admin.post("/api/v1/keys", json={"name": "bob"})).json()
            bob = bob_rec["key"]
            eve = (await admin.post("/api/v1/keys", json={"name": "eve"})).json()["key"]
            assert (await admin.post(f"/api/v1/keys/{bob_rec['id']}/credit", json={"amount": "2.00"})).status_code == 200
        async with net.client(bob) as c:
            job_id = (await c.post("/api/v1/jobs", json={"model": "fake-model", "prompt": "hi"})).json()["id"]
        async with net.client(eve) as c:
            assert (await c.get(f"/api/v1/jobs/{job_id}")).status_code == 404
            assert (await c.get(f"/api/v1/jobs/{job_id}/stream")).status_code == 404
            assert (await c.get("/api/v1/jobs")).json()["data"] == []


async def test_over_capacity_queues_then_429(tmp_path):
    from infernet.control import Settings

    async with Network.start(tmp=tmp_path, settings=Settings(heartbeat_s=0.5, queue_timeout_s=0.3)) as net:
        await net.add_node(FakeBackend(reply=" ".join(["w"] * 100), delay_s=0.02, slots=1))
        async with net.client() as c:
            body = {"model": "fake-model", "messages": [{"role": "user", "content": "x"}]}
            slow = asyncio.create_task(c.post("/v1/chat/completions", json=body))
            await net.wait_for(lambda: any(n.active for n in net.cp.sessions.nodes.values()))
            r = await c.post("/v1/chat/completions", json=body)
            assert r.status_code == 429
            assert r.headers["retry-after"]
            assert (await slow).status_code == 200


async def test_dashboard_page_is_served_without_a_key(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        async with httpx.AsyncClient(base_url=net.url) as c:
            r = await c.get("/dashboard")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "/dashboard/assets/app.js" in r.text


async def test_metrics_count_jobs_and_real_tokens_for_admins_only(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend(reply="one two three"))
        async with net.client() as c:
            for _ in range(2):
                r = await c.post("/v1/chat/completions", json={"model": "fake-model", "messages": [{"role": "user", "content": "a b"}]})
                assert r.status_code == 200
            text = (await c.get("/metrics")).text
        assert 'infernet_jobs_total{kind="chat",model="fake-model",status="completed"} 2.0' in text
        assert 'infernet_tokens_total{direction="output",model="fake-model"} 6.0' in text
        assert 'infernet_tokens_total{direction="input",model="fake-model"} 4.0' in text
        assert "infernet_nodes_online 1.0" in text
        client_key = await net.funded_key("carol")
        async with net.client(client_key) as c:
            assert (await c.get("/metrics")).status_code == 403


async def test_oversized_bodies_are_refused_with_413(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend())
        async with net.client() as c:
            huge = b'{"model": "fake-model", "messages": [{"role": "user", "content": "' + b"x" * (41 * 1024 * 1024) + b'"}]}'
            r = await c.post("/v1/chat/completions", content=huge, headers={"content-type": "application/json"})
            assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

            async def chunks():
                for _ in range(42):
                    yield b"x" * (1024 * 1024)

            r = await c.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
            assert r.status_code == 413


async def test_overhead_header_and_histogram_leave_the_engines_time_out(tmp_path):
    """A slow engine (8 tokens, 80 ms each) makes a long answer; infernet's own share, in
    the header and the histogram, is what is left once the node's engine time is taken off."""
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend(reply="a b c d e f g h", delay_s=0.08))
        body = {"model": "fake-model", "messages": [{"role": "user", "content": "x"}]}
        async with net.client() as c:
            t0 = asyncio.get_running_loop().time()
            r = await c.post("/v1/chat/completions", json=body)
            whole_ms = (asyncio.get_running_loop().time() - t0) * 1000
            async with c.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as s:
                stream_head = float(s.headers["infernet-overhead-ms"])
                await s.aread()
            text = (await c.get("/metrics")).text
        overhead = float(r.headers["infernet-overhead-ms"])
        assert whole_ms >= 8 * 80 and 0 <= overhead < whole_ms - 8 * 80 + 5
        assert 0 <= stream_head < 80  # to the first token, which took the engine 80 ms
        assert 'infernet_overhead_seconds_count{kind="chat"} 2.0' in text
