"""vLLM, SGLang and llama.cpp adapters against fakes that speak each engine's dialect."""

from __future__ import annotations

import asyncio
import json

import pytest

from infernet.backends.base import BackendError
from infernet.backends.openai_compat import OpenAICompatBackend
from infernet.protocol.messages import Usage
from tests.backends.fakes import FAIL_MODES, FakeOpenAIEngine, serve

FLAVOURS = {
    "vllm": "meta-llama/Llama-3.1-8B-Instruct",
    "sglang": "qwen/qwen2.5-0.5b-instruct",
    "llamacpp": "SmolLM2-135M-Instruct.Q4_1.gguf",
}
PUBLIC = {"vllm": FLAVOURS["vllm"], "sglang": FLAVOURS["sglang"], "llamacpp": "SmolLM2-135M-Instruct.Q4_1"}


def engine(flavour: str, **kw) -> FakeOpenAIEngine:
    return FakeOpenAIEngine(flavour=flavour, model=FLAVOURS[flavour], **kw)


def chat_body(flavour: str, **extra) -> dict:
    return {"model": PUBLIC[flavour], "messages": [{"role": "user", "content": "one two three"}], **extra}


async def collect(stream):
    chunks = [c async for c in stream]
    return "".join(c.text for c in chunks), chunks


@pytest.fixture(params=list(FLAVOURS))
def flavour(request):
    return request.param


async def test_chat_stream_text_usage_and_finish(flavour):
    fake = engine(flavour, reply="alpha beta gamma delta")
    async with serve(fake.app) as url:
        backend = OpenAICompatBackend(url, engine=flavour)
        text, chunks = await collect(backend.chat(chat_body(flavour)))
        await backend.aclose()
    assert text == "alpha beta gamma delta"
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage == Usage(3, 4)
    path, sent = fake.requests[-1]
    assert path == "/v1/chat/completions" and sent["stream"] is True
    assert sent["stream_options"]["include_usage"] is True
    assert sent["model"] == FLAVOURS[flavour]  # the engine's own id, whatever we advertise
    assert sent["stream_options"].get("continuous_usage_stats", False) == (flavour in ("vllm", "sglang"))


async def test_running_usage_rides_on_chunks_where_the_engine_sends_it():
    fake = engine("vllm", reply="a b c")
    async with serve(fake.app) as url:
        backend = OpenAICompatBackend(url, engine="vllm")
        _, chunks = await collect(backend.chat(chat_body("vllm")))
        await backend.aclose()
    assert [c.usage.completion_tokens for c in chunks if c.text] == [1, 2, 3]


async def test_completion_and_max_tokens(flavour):
    fake = engine(flavour, reply="a b c d e f")
    async with serve(fake.app) as url:
        backend = OpenAICompatBackend(url, engine=flavour)
        text, chunks = await collect(backend.complete({"model": PUBLIC[flavour], "prompt": "x y", "max_tokens": 2}))
        await backend.aclose()
    assert fake.requests[-1][0] == "/v1/completions"
    assert text == "a b" and chunks[-1].finish_reason == "length" and chunks[-1].usage == Usage(2, 2)


async def test_models_context_and_capacity_from_native_endpoints(flavour):
    fake = engine(flavour, context_length=16384, slots=6)
    async with serve(fake.app) as url:
        backend = OpenAICompatBackend(url, engine=flavour)
        ads = await backend.models()
        assert [(m.name, m.context_length, m.kind) for m in ads] == [(PUBLIC[flavour], 16384, "chat")]
        expected = {"vllm": None, "sglang": 6, "llamacpp": 6}[flavour]  # vLLM does not say: the node learns it
        assert await backend.capacity() == expected
        assert await OpenAICompatBackend(url, engine=flavour, capacity=3).capacity() == 3
        health = await backend.health()
        assert health.ok and health.info["models"] == [FLAVOURS[flavour]]
        await backend.aclose()


async def test_llamacpp_loading_is_not_ready_and_advertises_nothing():
    fake = engine("llamacpp", loading=True)
    async with serve(fake.app) as url:
        backend = OpenAICompatBackend(url, engine="llamacpp")
        health = await backend.health()
        assert not health.ok and "Loading model" in health.detail
        with pytest.raises(BackendError) as err:
            await backend.models()
        assert err.value.retryable
        fake.loading = False
        assert (await backend.health()).ok and await backend.capacity() == 4
        await backend.aclose()


async def test_model_alias_serves_the_only_model_under_the_operators_name():
    fake = engine("vllm")
    async with serve(fake.app) as url:
        backend = OpenAICompatBackend(url, engine="vllm", model="llama-8b")
        assert [m.name for m in await backend.models()] == ["llama-8b"]
        text, _ = await collect(backend.chat(chat_body("vllm", model="llama-8b")))
        assert fake.requests[-1][1]["model"] == FLAVOURS["vllm"]
        await backend.aclose()


async def test_cancel_closes_the_engine_connection(flavour):
    fake = engine(flavour, reply=" ".join(["w"] * 300), delay_s=0.01)
    async with serve(fake.app) as url:
        backend = OpenAICompatBackend(url, engine=flavour)
        stream = backend.chat(chat_body(flavour))
        n = 0
        async for chunk in stream:
            n += bool(chunk.text)
            if n == 3:
                break
        await stream.aclose()
        await asyncio.wait_for(fake.aborted.wait(), 5)
        assert fake.completed_streams == 0
        await backend.aclose()


@pytest.mark.parametrize("mode", FAIL_MODES)
async def test_garbage_fails_the_job_clearly_and_the_adapter_recovers(flavour, mode):
    fake = engine(flavour, reply="one two", fail=mode)
    async with serve(fake.app) as url:
        backend = OpenAICompatBackend(url, engine=flavour)
        with pytest.raises(BackendError) as err:
            await collect(backend.chat(chat_body(flavour)))
        expected = {"http500": "HTTP 500", "invalid_json": "invalid JSON", "truncate": "truncated", "error_event": "mid-stream", "drop": "connection failed"}[mode]
        assert expected in err.value.message and err.value.message.startswith(flavour)
        if mode == "http500":
            assert err.value.retryable and "illegal memory access" in err.value.message
        fake.fail = None
        text, chunks = await collect(backend.chat(chat_body(flavour)))
        assert text == "one two" and chunks[-1].usage == Usage(3, 2)
        await backend.aclose()


async def test_a_model_that_vanished_is_model_not_found():
    fake = engine("vllm")
    async with serve(fake.app) as url:
        backend = OpenAICompatBackend(url, engine="vllm")
        await backend.models()
        fake.model = "another/model"  # the engine was restarted with another model
        with pytest.raises(BackendError) as err:
            await collect(backend.chat(chat_body("vllm")))
        assert err.value.code == "model_not_found" and err.value.retryable
        assert "does not exist" in err.value.message
        await backend.aclose()


async def test_unreachable_engine_is_a_retryable_error():
    backend = OpenAICompatBackend("http://127.0.0.1:9", engine="sglang")
    assert not (await backend.health()).ok
    with pytest.raises(BackendError) as err:
        await collect(backend.chat(chat_body("sglang")))
    assert err.value.retryable
    await backend.aclose()


async def test_embeddings_are_reencoded_uniformly():
    fake = engine("vllm")
    async with serve(fake.app) as url:
        backend = OpenAICompatBackend(url, engine="vllm")
        out = await backend.embed({"model": FLAVOURS["vllm"], "input": ["a b", "c"], "encoding_format": "base64"})
        assert fake.requests[-1][1]["encoding_format"] == "float"
        assert isinstance(out["data"][0]["embedding"], str) and out["usage"]["prompt_tokens"] == 3
        await backend.aclose()


# -- the API surface: what each engine is sent, and what comes back -----------------------

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]


async def sent_for(flavour: str, body: dict, **kw) -> dict:
    fake = engine(flavour, **kw)
    async with serve(fake.app) as url:
        backend = OpenAICompatBackend(url, engine=flavour)
        await backend.models()
        await collect(backend.chat(chat_body(flavour, **body)))
        await backend.aclose()
    return fake.requests[-1][1]


@pytest.mark.parametrize("flavour, version, fmt, expected", [
    ("vllm", "0.11.0", "json_schema", {"structured_outputs": {"json": SCHEMA}}),
    ("vllm", "0.11.0", "json_object", {"structured_outputs": {"json_object": True}}),
    ("vllm", "0.6.3.post1", "json_schema", {"guided_json": SCHEMA}),
    ("vllm", "0.6.3.post1", "json_object", {"response_format": {"type": "json_object"}}),
    ("llamacpp", None, "json_schema", {"response_format": {"type": "json_object", "schema": SCHEMA}}),
    ("llamacpp", None, "json_object", {"response_format": {"type": "json_object"}}),
    ("sglang", None, "json_schema", {"response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA, "strict": True}}}),
    ("sglang", None, "json_object", {"response_format": {"type": "json_object"}}),
])
async def test_structured_output_goes_in_each_engines_guided_decoding_fields(flavour, version, fmt, expected):
    rf = {"type": "json_object"} if fmt == "json_object" else {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA, "strict": True}}
    sent = await sent_for(flavour, {"response_format": rf}, **({"version": version} if version else {}))
    for key, value in expected.items():
        assert sent[key] == value
    guided = {"structured_outputs", "guided_json", "response_format"} - set(expected)
    assert not guided & set(sent), f"sent more than one way: {sorted(guided & set(sent))}"


async def test_sampling_parameters_tools_and_logprobs_reach_the_engine_as_given(flavour):
    extra = {"presence_penalty": 0.5, "frequency_penalty": -0.5, "logit_bias": {"42": -100.0}, "logprobs": True, "top_logprobs": 2,
             "tools": TOOLS, "tool_choice": "required", "parallel_tool_calls": False}
    sent = await sent_for(flavour, extra)
    assert {k: sent[k] for k in extra} == extra


async def test_streamed_tool_calls_reassemble_to_the_engines_call(flavour):
    fake = engine(flavour, tool_call=("get_weather", {"city": "Paris"}))
    async with serve(fake.app) as url:
        backend = OpenAICompatBackend(url, engine=flavour)
        _, chunks = await collect(backend.chat(chat_body(flavour, tools=TOOLS)))
        await backend.aclose()
    deltas = [d for c in chunks for d in c.tool_calls or ()]
    assert deltas[0]["id"] == "chatcmpl-tool-5d1f3c" and deltas[0]["function"]["name"] == "get_weather"
    assert all("id" not in d and "name" not in d["function"] for d in deltas[1:])  # nulls dropped
    assert json.loads("".join(d["function"].get("arguments", "") for d in deltas)) == {"city": "Paris"}
    assert chunks[-1].finish_reason == "tool_calls" and chunks[-1].usage == Usage(3, 3)


async def test_logprobs_come_back_chat_shaped_for_chat_and_completions(flavour):
    fake = engine(flavour, reply="a b")
    async with serve(fake.app) as url:
        backend = OpenAICompatBackend(url, engine=flavour)
        _, chat = await collect(backend.chat(chat_body(flavour, logprobs=True, top_logprobs=2)))
        _, comp = await collect(backend.complete({"model": PUBLIC[flavour], "prompt": "x", "logprobs": 3}))
        await backend.aclose()
    entries = [e for c in chat for e in c.logprobs or ()]
    assert [e["token"] for e in entries] == ["a", " b"] and [len(e["top_logprobs"]) for e in entries] == [2, 2]
    legacy = [e for c in comp for e in c.logprobs or ()]
    assert [e["token"] for e in legacy] == ["a", " b"] and [len(e["top_logprobs"]) for e in legacy] == [3, 3]
    assert legacy[0]["logprob"] == pytest.approx(-0.1) and legacy[0]["bytes"] == [97]


async def test_each_engine_advertises_what_it_honours():
    expected = {
        "vllm": ({"tools", "tool_choice", "json_object", "json_schema", "logprobs", "penalties", "logit_bias"}, {"text"}),
        "sglang": ({"tools", "tool_choice", "json_object", "json_schema", "logprobs", "penalties", "logit_bias"}, {"text", "image"}),
        "llamacpp": ({"tools", "tool_choice", "json_object", "json_schema", "logprobs", "penalties", "logit_bias"}, {"text", "image"}),
    }
    for flavour, (features, modalities) in expected.items():
        fake = engine(flavour, vision=True)
        async with serve(fake.app) as url:
            backend = OpenAICompatBackend(url, engine=flavour)
            (ad,) = await backend.models()
            await backend.aclose()
        assert set(ad.features) == features and set(ad.modalities) == modalities, flavour


async def test_count_tokens_asks_the_engines_tokenizer(flavour):
    fake = engine(flavour)
    async with serve(fake.app) as url:
        backend = OpenAICompatBackend(url, engine=flavour)
        await backend.models()
        n = await backend.count_tokens("one two three four")
        await backend.aclose()
    if flavour == "sglang":  # publishes no tokenizer endpoint: the node's byte bound holds
        assert n is None and not [p for p, _ in fake.requests if "token" in p]
    else:
        assert n == 4
        path, body = fake.requests[-1]
        assert path == "/tokenize"
        assert body == ({"model": FLAVOURS["vllm"], "prompt": "one two three four", "add_special_tokens": False} if flavour == "vllm" else {"content": "one two three four", "add_special": False})
