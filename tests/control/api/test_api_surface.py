"""The API surface agents and SDKs use, driven with the official openai client against a real
network of fake engines: models, tool calls (whole and streamed), logprobs, refusals naming
the parameter, routing by what a node advertises, and the response headers."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from infernet.backends.fake import FakeBackend
from infernet.control import Settings
from infernet.protocol.messages import FEATURES
from tests.control.money.books import funded_key
from tests.harness import ADMIN_KEY, Network

ASK = [{"role": "user", "content": "what is the weather in Paris"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather now", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
ALL = tuple(FEATURES)


def sdk(net: Network, key: str = ADMIN_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=net.url + "/v1", api_key=key, max_retries=0)


async def test_models_retrieve_with_context_created_and_what_each_accepts(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend(("fake-model",), features=("tools", "json_schema"), modalities=("text", "image")))
        await net.add_node(FakeBackend(("plain-model",)))
        client = sdk(net)
        listed = {m.id: m for m in (await client.models.list()).data}
        model = await client.models.retrieve("fake-model")
        assert model.id == "fake-model" and model.owned_by == "infernet" and model.created > 0
        extra = model.model_extra
        assert extra["max_model_len"] == 4096 and extra["input_modalities"] == ["text", "image"]
        assert extra["features"] == ["tools", "json_schema"] and extra["endpoints"] == ["chat.completions", "completions"]
        assert listed["plain-model"].model_extra["features"] == [] and listed["plain-model"].model_extra["input_modalities"] == ["text"]
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("no-such-model")


@pytest.mark.parametrize("extra, param", [
    ({"tools": TOOLS}, "tools"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}}}, "response_format"),
    ({"logprobs": True}, "logprobs"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"frequency_penalty": 1.0}, "frequency_penalty"),
    ({"logit_bias": {"12": 3}}, "logit_bias"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "what is it"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]}]}, "messages[0].content"),
])
async def test_what_no_node_honours_is_a_400_naming_the_parameter(tmp_path, extra, param):
    async with Network.start(tmp=tmp_path) as net:
        engine = FakeBackend()
        await net.add_node(engine)  # advertises nothing: text only, as an old node
        client = sdk(net)
        with pytest.raises(openai.BadRequestError) as err:
            await client.chat.completions.create(model="fake-model", **{"messages": ASK, **extra})
        assert err.value.body["param"] == param and err.value.body["code"] in ("unsupported_parameter", "unsupported_content")
        assert engine.calls == 0
        # Defaults need nothing: a zero penalty, tools that may not be called.
        ok = await client.chat.completions.create(model="fake-model", messages=ASK, presence_penalty=0, tools=TOOLS, tool_choice="none")
        assert ok.choices[0].message.content


async def test_forcing_a_call_needs_a_node_that_can_force_one(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend(features=("tools",), tool_call=("get_weather", {"city": "Paris"})))  # Ollama-like
        client = sdk(net)
        auto = await client.chat.completions.create(model="fake-model", messages=ASK, tools=TOOLS)
        assert auto.choices[0].message.tool_calls[0].function.name == "get_weather"
        with pytest.raises(openai.BadRequestError) as err:
            await client.chat.completions.create(model="fake-model", messages=ASK, tools=TOOLS, tool_choice="required")
        assert err.value.body["param"] == "tool_choice"


async def test_jobs_go_only_to_nodes_that_advertise_what_they_need(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        plain = FakeBackend(slots=8)
        able = FakeBackend(features=ALL, slots=8)
        await net.add_node(plain)
        await net.add_node(able)
        client = sdk(net)
        for _ in range(6):
            r = await client.chat.completions.create(model="fake-model", messages=ASK, logprobs=True, top_logprobs=1)
            assert r.choices[0].logprobs is not None
        assert plain.calls == 0 and able.calls == 6


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}, "auto"])
async def test_tool_calls_whole_and_streamed_in_the_openai_shape(tmp_path, choice):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend(features=ALL, tool_call=("get_weather", {"city": "Paris"})))
        client = sdk(net)
        r = await client.chat.completions.create(model="fake-model", messages=ASK, tools=TOOLS, tool_choice=choice)
        msg = r.choices[0].message
        assert r.choices[0].finish_reason == "tool_calls" and msg.content is None
        (call,) = msg.tool_calls
        assert call.type == "function" and call.id and call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Paris"}
        assert r.usage.completion_tokens > 0  # the call's text is billed output

        chunks = [c async for c in await client.chat.completions.create(model="fake-model", messages=ASK, tools=TOOLS, tool_choice=choice, stream=True)]
        deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]
        assert deltas[0].id and deltas[0].type == "function" and deltas[0].function.name == "get_weather"
        assert all(d.index == 0 and d.id is None and d.function.name is None for d in deltas[1:])
        assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "Paris"}
        assert chunks[-1].choices[0].finish_reason == "tool_calls"

        # The SDK's own stream helper reassembles the same call.
        async with client.chat.completions.stream(model="fake-model", messages=ASK, tools=TOOLS, tool_choice=choice) as stream:
            final = await stream.get_final_completion()
        (again,) = final.choices[0].message.tool_calls
        assert again.function.name == "get_weather" and json.loads(again.function.arguments) == {"city": "Paris"}

        # The call and its result go back in the history.
        follow = await client.chat.completions.create(model="fake-model", tools=TOOLS, tool_choice="none", messages=[
            *ASK, msg.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "sunny"}])
        assert follow.choices[0].finish_reason == "stop" and follow.choices[0].message.content


async def test_a_tool_call_job_is_metered_from_the_calls_text(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend(features=ALL, tool_call=("get_weather", {"city": "Paris"})))
        async with net.client() as admin:
            key = await funded_key(admin, "5.00")
        r = await sdk(net, key["key"]).chat.completions.create(model="fake-model", messages=ASK, tools=TOOLS, tool_choice="required")
        async with net.client(key["key"]) as c:
            receipt = (await c.get(f"/api/v1/jobs/{r.id}/receipt")).json()
        settled = receipt["settlement"]
        assert settled["output_tokens"] == r.usage.completion_tokens == 3 and settled["metered"] == "claimed"


async def test_logprobs_come_back_with_the_asked_number_of_alternatives(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend(features=ALL, reply="one two three"))
        client = sdk(net)
        r = await client.chat.completions.create(model="fake-model", messages=ASK, logprobs=True, top_logprobs=3)
        content = r.choices[0].logprobs.content
        assert [e.token for e in content] == ["one", " two", " three"] and all(len(e.top_logprobs) == 3 for e in content)
        assert content[0].logprob == pytest.approx(-0.1) and content[0].bytes == list(b"one")
        chunks = [c async for c in await client.chat.completions.create(model="fake-model", messages=ASK, logprobs=True, top_logprobs=2, stream=True)]
        streamed = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
        assert [e.token for e in streamed] == ["one", " two", " three"] and all(len(e.top_logprobs) == 2 for e in streamed)
        comp = await client.completions.create(model="fake-model", prompt="x", logprobs=2)
        lp = comp.choices[0].logprobs
        assert lp.tokens == ["one", " two", " three"] and lp.text_offset == [0, 3, 7] and all(len(t) == 2 for t in lp.top_logprobs)
        with pytest.raises(openai.BadRequestError) as err:
            await client.chat.completions.create(model="fake-model", messages=ASK, top_logprobs=2)
        assert err.value.body["param"] == "top_logprobs"


@pytest.mark.parametrize("extra, param", [
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools"),
    ({"parallel_tool_calls": False}, "parallel_tool_calls"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}]}, "messages[0].content"),
])
async def test_malformed_or_unsupported_requests_are_400s_naming_the_parameter(tmp_path, extra, param):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend(features=ALL))
        async with net.client() as c:
            r = await c.post("/v1/chat/completions", json={"model": "fake-model", "messages": ASK, **extra})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == param, r.text


async def test_completion_parameters_no_engine_honours_are_refused(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend(features=ALL))
        async with net.client() as c:
            for extra, param in (({"echo": True}, "echo"), ({"suffix": "end"}, "suffix"), ({"best_of": 2}, "best_of"), ({"logprobs": 6}, "logprobs")):
                r = await c.post("/v1/completions", json={"model": "fake-model", "prompt": "x", **extra})
                assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


async def test_request_id_and_rate_limit_headers(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend())
        async with net.client() as admin:
            key = await funded_key(admin, "5.00")
            r = await admin.patch(f"/api/v1/keys/{key['id']}", json={"rate_limit": 2})
            assert r.status_code == 200, r.text
            unlimited = await admin.post("/v1/chat/completions", json={"model": "fake-model", "messages": ASK})
            assert unlimited.headers["x-request-id"] == unlimited.json()["id"]
            assert "x-ratelimit-limit-requests" not in unlimited.headers
        async with net.client(key["key"]) as c:
            first = await c.post("/v1/chat/completions", json={"model": "fake-model", "messages": ASK})
            assert first.headers["x-request-id"] == first.json()["id"]
            assert first.headers["x-ratelimit-limit-requests"] == "2" and first.headers["x-ratelimit-remaining-requests"] == "1"
            assert first.headers["x-ratelimit-reset-requests"].endswith("s")
            async with c.stream("POST", "/v1/chat/completions", json={"model": "fake-model", "messages": ASK, "stream": True}) as s:
                assert s.headers["x-request-id"].startswith("chatcmpl-") and s.headers["x-ratelimit-remaining-requests"] == "0"
                await s.aread()
            over = await c.post("/v1/chat/completions", json={"model": "fake-model", "messages": ASK})
            assert over.status_code == 429 and int(over.headers["retry-after"]) >= 1
            assert over.headers["x-ratelimit-remaining-requests"] == "0" and "x-request-id" not in over.headers


async def test_cors_is_off_unless_origins_are_listed(tmp_path):
    (tmp_path / "off").mkdir()
    (tmp_path / "on").mkdir()
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    async with Network.start(tmp=tmp_path / "off") as net:
        async with httpx.AsyncClient(base_url=net.url) as c:
            r = await c.options("/v1/chat/completions", headers=preflight)
            assert "access-control-allow-origin" not in r.headers
    async with Network.start(tmp=tmp_path / "on", settings=Settings(heartbeat_s=0.5, cors_origins=("https://app.example",))) as net:
        await net.add_node(FakeBackend())
        async with httpx.AsyncClient(base_url=net.url) as c:
            r = await c.options("/v1/chat/completions", headers=preflight)
            assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
            r = await c.post("/v1/chat/completions", json={"model": "fake-model", "messages": ASK}, headers={"Origin": "https://app.example", "Authorization": f"Bearer {ADMIN_KEY}"})
            assert r.headers["access-control-allow-origin"] == "https://app.example" and "x-request-id" in r.headers["access-control-expose-headers"]
            other = await c.options("/v1/chat/completions", headers={**preflight, "Origin": "https://evil.example"})
            assert other.headers.get("access-control-allow-origin") != "https://evil.example"
