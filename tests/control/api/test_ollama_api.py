"""The control plane's Ollama-compatible API, driven with the official `ollama` client: the
same routing, holds and billing as the OpenAI routes, in Ollama's shapes and errors."""

from __future__ import annotations

import json

import httpx
import ollama
import pytest

from infernet.backends.fake import FakeBackend
from infernet.protocol.messages import FEATURES, ModelAd
from tests.control.money.books import funded_key
from tests.harness import ADMIN_KEY, Network

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
ASK = [{"role": "user", "content": "say hello"}]


class EmbeddingFake(FakeBackend):
    async def models(self) -> list[ModelAd]:
        return [ModelAd(name="embedder", kind="embedding", context_length=256)]


def client(net: Network, key: str = ADMIN_KEY) -> ollama.AsyncClient:
    return ollama.AsyncClient(host=net.url, headers={"Authorization": f"Bearer {key}"})


async def test_models_through_tags_show_and_ps(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend(("fake-model",), features=("tools",), modalities=("text", "image")))
        await net.add_node(EmbeddingFake(("embedder",)))
        c = client(net)
        tags = await c.list()
        assert sorted(m.model for m in tags.models) == ["embedder", "fake-model"]
        shown = await c.show("fake-model")
        assert set(shown.capabilities) == {"completion", "tools", "vision"} and shown.modelinfo["infernet.context_length"] == 4096
        running = await c.ps()
        assert {m.model: m.context_length for m in running.models}["fake-model"] == 4096
        assert (await c.show("embedder")).capabilities == ["embedding"]
        with pytest.raises(ollama.ResponseError) as err:
            await c.show("nope")
        assert err.value.status_code == 404 and "nope" in err.value.error


async def test_chat_whole_and_streamed_with_ollamas_counts(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        engine = FakeBackend(reply="Hello there friend")
        await net.add_node(engine)
        c = client(net)
        r = await c.chat(model="fake-model", messages=ASK, options={"num_predict": 2, "temperature": 0.5, "seed": 3, "stop": ["zz"]})
        assert r.message.role == "assistant" and r.message.content == "Hello there"
        assert r.done and r.done_reason == "length" and r.prompt_eval_count == 2 and r.eval_count == 2
        assert r.total_duration > 0 and r.eval_duration >= 0 and r.load_duration == 0
        parts = [p async for p in await c.chat(model="fake-model", messages=ASK, stream=True)]
        assert "".join(p.message.content for p in parts) == "Hello there friend"
        assert [p.done for p in parts].count(True) == 1 and parts[-1].done and parts[-1].done_reason == "stop" and parts[-1].eval_count == 3
        # The job ran like any other: listed, with its usage.
        async with net.client() as admin:
            jobs = (await admin.get("/api/v1/jobs")).json()["data"]
        assert len(jobs) == 2 and all(j["status"] == "completed" for j in jobs)


async def test_generate_raw_and_templated_and_a_load_request(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        engine = FakeBackend(reply="a b c")
        await net.add_node(engine)
        c = client(net)
        raw = await c.generate(model="fake-model", prompt="one two", raw=True)
        assert raw.response == "a b c" and raw.done_reason == "stop" and raw.prompt_eval_count == 2
        templated = await c.generate(model="fake-model", prompt="one two", system="be brief")
        assert templated.response == "a b c" and templated.prompt_eval_count == 4
        streamed = "".join([p.response async for p in await c.generate(model="fake-model", prompt="x", stream=True)])
        assert streamed == "a b c"
        loaded = await c.generate(model="fake-model")
        assert loaded.done and loaded.done_reason == "load" and engine.calls == 3


async def test_embed(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(EmbeddingFake(("embedder",)))
        r = await client(net).embed(model="embedder", input=["a b", "c"])
        assert r.embeddings == [[3.0, 1.0], [1.0, 1.0]] and r.prompt_eval_count == 3


async def test_format_tools_and_logprobs(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend(features=tuple(FEATURES), reply="x y", tool_call=("get_weather", {"city": "Paris"})))
        c = client(net)
        called = await c.chat(model="fake-model", messages=ASK, tools=TOOLS)
        (call,) = called.message.tool_calls
        assert call.function.name == "get_weather" and call.function.arguments == {"city": "Paris"}
        parts = [p async for p in await c.chat(model="fake-model", messages=ASK, tools=TOOLS, stream=True)]
        streamed = [tc for p in parts for tc in p.message.tool_calls or ()]
        assert [(tc.function.name, tc.function.arguments) for tc in streamed] == [("get_weather", {"city": "Paris"})]
        history = [*ASK, {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                   {"role": "tool", "content": "sunny", "tool_name": "get_weather"}]
        after = await c.chat(model="fake-model", messages=history, format="json", logprobs=True, top_logprobs=2)
        assert after.message.content == "x y" and [lp.token for lp in after.logprobs] == ["x", " y"]
        assert all(len(lp.top_logprobs) == 2 for lp in after.logprobs)
        schema = await c.chat(model="fake-model", messages=ASK, format={"type": "object"})
        assert schema.done


async def test_refusals_and_errors_in_ollamas_shape(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        engine = FakeBackend()
        await net.add_node(engine)  # text only
        c = client(net)
        for kw, needle in (
            ({"format": "json"}, "response_format"), ({"options": {"top_k": 5}}, "top_k"), ({"think": True}, "think"),
            ({"messages": [{"role": "user", "content": "what is this", "images": ["iVBORw0KGgo="]}]}, "image"),
            ({"options": {"temperature": 9}}, "options.temperature"),
        ):
            with pytest.raises(ollama.ResponseError) as err:
                await c.chat(**{"model": "fake-model", "messages": ASK, **kw})
            assert err.value.status_code == 400 and needle in err.value.error, (kw, err.value.error)
        with pytest.raises(ollama.ResponseError) as err:
            await c.chat(model="no-such", messages=ASK)
        assert err.value.status_code == 404
        async with httpx.AsyncClient(base_url=net.url) as raw:
            r = await raw.post("/api/chat", json={"model": "fake-model", "messages": ASK})
            assert r.status_code == 401 and set(r.json()) == {"error"}
        assert engine.calls == 0


async def test_billed_and_rate_limited_like_the_openai_routes(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend())
        async with net.client() as admin:
            key = await funded_key(admin, "5.00")
            await admin.patch(f"/api/v1/keys/{key['id']}", json={"rate_limit": 1})
        async with net.client(key["key"]) as c:
            r = await c.post("/api/chat", json={"model": "fake-model", "messages": ASK, "stream": False})
            assert r.status_code == 200 and r.headers["x-ratelimit-remaining-requests"] == "0"
            job_id = r.headers["x-request-id"]
            receipt = (await c.get(f"/api/v1/jobs/{job_id}/receipt")).json()
            assert receipt["settlement"]["output_tokens"] == r.json()["eval_count"]
            over = await c.post("/api/chat", json={"model": "fake-model", "messages": ASK})
            assert over.status_code == 429 and "rate limit" in over.json()["error"] and over.headers["retry-after"]
            lines = [json.loads(x) for x in (await c.post("/api/chat", json={"model": "fake-model", "messages": ASK})).text.splitlines()]
            assert lines[0]["error"]
