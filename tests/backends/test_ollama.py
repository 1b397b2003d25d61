"""The Ollama adapter against a fake that speaks Ollama's native API."""

from __future__ import annotations

import asyncio
import base64
import struct

import pytest

from infernet.backends.base import BackendError
from infernet.backends.ollama import OllamaBackend
from infernet.protocol.messages import Usage
from tests.backends.fakes import FAIL_MODES, FakeOllama, OllamaModel, serve

CHAT = {"model": "llama3.2", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hello to me"}]}


async def collect(stream):
    text, last = [], None
    async for chunk in stream:
        text.append(chunk.text)
        last = chunk
    return "".join(text), last


async def test_chat_streams_text_and_the_engines_usage():
    fake = FakeOllama(reply="Hello there friend")
    async with serve(fake.app) as url:
        backend = OllamaBackend(url)
        chunks = [c async for c in backend.chat(CHAT)]
        await backend.aclose()
    assert [c.text for c in chunks if c.text] == ["Hello", " there", " friend"]
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage == Usage(prompt_tokens=6, completion_tokens=3)


async def test_openai_params_become_ollama_options_and_num_ctx_is_explicit():
    fake = FakeOllama(reply="a b c d e")
    async with serve(fake.app) as url:
        backend = OllamaBackend(url, keep_alive="10m")
        body = {**CHAT, "temperature": 0.2, "top_p": 0.9, "seed": 7, "stop": "\n\n", "max_tokens": 2}
        text, last = await collect(backend.chat(body))
        await backend.aclose()
    path, sent = fake.requests[-1]
    assert path == "/api/chat" and sent["stream"] is True and sent["keep_alive"] == "10m"
    assert sent["options"] == {"temperature": 0.2, "top_p": 0.9, "seed": 7, "stop": ["\n\n"], "num_predict": 2, "num_ctx": 8192}
    assert sent["messages"][0] == {"role": "system", "content": "be brief"}
    assert text == "a b" and last.finish_reason == "length" and last.usage.completion_tokens == 2


async def test_completion_uses_generate_raw():
    fake = FakeOllama(reply="upon a time")
    async with serve(fake.app) as url:
        backend = OllamaBackend(url)
        text, last = await collect(backend.complete({"model": "llama3.2:latest", "prompt": "Once"}))
        await backend.aclose()
    path, sent = fake.requests[-1]
    assert path == "/api/generate" and sent["raw"] is True and sent["prompt"] == "Once"
    assert text == "upon a time" and last.usage == Usage(1, 3)


async def test_models_carry_context_and_kind_and_follow_num_ctx():
    fake = FakeOllama(models={
        "llama3.2:latest": OllamaModel(context_length=131072),
        "tiny:latest": OllamaModel(size=1000, context_length=2048, family="qwen2"),
        "all-minilm:latest": OllamaModel(size=45960996, context_length=512, family="bert", capabilities=("embedding",)),
    })
    async with serve(fake.app) as url:
        backend = OllamaBackend(url)
        ads = {m.name: m for m in await backend.models()}
        assert ads["llama3.2:latest"].context_length == 8192  # capped: what we send as num_ctx
        assert ads["tiny:latest"].context_length == 2048  # never more than it was trained for
        assert ads["all-minilm:latest"].kind == "embedding" and ads["llama3.2:latest"].kind == "chat"
        small = OllamaBackend(url, num_ctx=4096, model="llama3.2")
        assert [(m.name, m.context_length) for m in await small.models()] == [("llama3.2:latest", 4096)]
        shows = sum(1 for p, _ in fake.requests if p == "/api/show")
        await backend.models()
        assert sum(1 for p, _ in fake.requests if p == "/api/show") == shows  # cached by digest
        await backend.aclose()
        await small.aclose()


async def test_capacity_from_setting_or_environment(monkeypatch):
    monkeypatch.delenv("OLLAMA_NUM_PARALLEL", raising=False)
    assert await OllamaBackend("http://127.0.0.1:9").capacity() == 1
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "4")
    assert await OllamaBackend("http://127.0.0.1:9").capacity() == 4
    assert await OllamaBackend("http://127.0.0.1:9", parallel=2).capacity() == 2


async def test_health_reports_version_and_missing_models():
    fake = FakeOllama()
    async with serve(fake.app) as url:
        assert (await OllamaBackend(url).health()).ok
        missing = await OllamaBackend(url, model="qwen2.5:7b").health()
        assert not missing.ok and "infernet model pull qwen2.5:7b" in missing.detail
    down = await OllamaBackend(url).health()
    assert not down.ok and "unreachable" in down.detail


async def test_cancel_closes_the_engine_connection():
    fake = FakeOllama(reply=" ".join(["w"] * 200), delay_s=0.01)
    async with serve(fake.app) as url:
        backend = OllamaBackend(url)
        stream = backend.chat(CHAT)
        got = 0
        async for chunk in stream:
            got += bool(chunk.text)
            if got == 3:
                break
        await stream.aclose()
        await asyncio.wait_for(fake.aborted.wait(), 5)
        await backend.aclose()
    assert fake.completed_streams == 0


@pytest.mark.parametrize("mode", FAIL_MODES)
async def test_garbage_fails_the_job_clearly_and_the_adapter_recovers(mode):
    fake = FakeOllama(reply="one two three", fail=mode)
    async with serve(fake.app) as url:
        backend = OllamaBackend(url)
        with pytest.raises(BackendError) as err:
            await collect(backend.chat(CHAT))
        assert err.value.message.startswith("ollama")
        expected = {"http500": "HTTP 500", "invalid_json": "invalid JSON", "truncate": "truncated", "error_event": "unexpected EOF", "drop": "connection failed"}[mode]
        assert expected in err.value.message
        fake.fail = None
        text, last = await collect(backend.chat(CHAT))
        assert text == "one two three" and last.usage.completion_tokens == 3
        await backend.aclose()


async def test_a_model_that_vanished_is_model_not_found():
    fake = FakeOllama()
    async with serve(fake.app) as url:
        backend = OllamaBackend(url)
        await backend.models()  # the node advertised it...
        fake.models.clear()  # ...then someone ran `ollama rm`
        with pytest.raises(BackendError) as err:
            await collect(backend.chat(CHAT))
        assert err.value.code == "model_not_found" and err.value.retryable
        with pytest.raises(BackendError) as err:
            await collect(backend.chat({**CHAT, "model": "never-there"}))
        assert err.value.code == "model_not_found"
        await backend.aclose()


async def test_pull_streams_progress_then_the_model_is_listed():
    fake = FakeOllama(registry={"qwen2.5:0.5b": OllamaModel(size=397821319, context_length=32768, family="qwen2")})
    async with serve(fake.app) as url:
        backend = OllamaBackend(url)
        events = [e async for e in backend.pull("qwen2.5:0.5b")]
        assert events[0] == {"status": "pulling manifest"} and events[-1] == {"status": "success"}
        progress = [e for e in events if "completed" in e]
        assert progress[-1]["completed"] == progress[-1]["total"] == 397821319
        assert "qwen2.5:0.5b" in [m.name for m in await backend.models()]
        with pytest.raises(BackendError, match="file does not exist"):
            [e async for e in backend.pull("nope:1b")]
        await backend.delete("qwen2.5:0.5b")
        assert "qwen2.5:0.5b" not in [m.name for m in await backend.models()]
        with pytest.raises(BackendError) as err:
            await backend.delete("qwen2.5:0.5b")
        assert err.value.code == "model_not_found"
        await backend.aclose()


async def test_closing_a_pull_aborts_it():
    fake = FakeOllama(registry={"big:latest": OllamaModel()}, delay_s=0.05, pull_chunks=50)
    async with serve(fake.app) as url:
        backend = OllamaBackend(url)
        pull = backend.pull("big")
        async for event in pull:
            if event.get("completed"):
                break
        await pull.aclose()
        await asyncio.wait_for(fake.aborted.wait(), 5)
        assert "big:latest" not in fake.models
        await backend.aclose()


async def test_embed_returns_openai_shape_float_and_base64():
    fake = FakeOllama(models={"all-minilm:latest": OllamaModel(family="bert", capabilities=("embedding",))})
    async with serve(fake.app) as url:
        backend = OllamaBackend(url)
        out = await backend.embed({"model": "all-minilm", "input": ["a b", "hello"]})
        assert out["object"] == "list" and out["model"] == "all-minilm"
        assert [d["index"] for d in out["data"]] == [0, 1] and out["data"][0]["embedding"] == [3.0, 1.0, 0.5, -0.25]
        assert out["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
        b64 = await backend.embed({"model": "all-minilm", "input": "hello", "encoding_format": "base64"})
        raw = base64.b64decode(b64["data"][0]["embedding"])
        assert list(struct.unpack("<4f", raw)) == [5.0, 1.0, 0.5, -0.25]
        with pytest.raises(BackendError) as err:
            await backend.embed({"model": "nope", "input": "x"})
        assert err.value.code == "model_not_found"
        await backend.aclose()


# -- the API surface: what Ollama is sent, and what comes back ----------------------------

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]


async def sent_chat(body: dict, **kw) -> dict:
    fake = FakeOllama(**kw)
    async with serve(fake.app) as url:
        backend = OllamaBackend(url)
        await collect(backend.chat({**CHAT, **body}))
        await backend.aclose()
    return fake.requests[-1][1]


@pytest.mark.parametrize("fmt, expected", [
    ({"type": "json_object"}, "json"),
    ({"type": "json_schema", "json_schema": {"name": "c", "schema": SCHEMA}}, SCHEMA),
])
async def test_response_format_becomes_ollamas_format(fmt, expected):
    sent = await sent_chat({"response_format": fmt})
    assert sent["format"] == expected and "response_format" not in sent


async def test_tools_history_images_and_logprobs_in_ollamas_shape():
    png = "iVBORw0KGgoAAAANSUhEUg=="
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}]},
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    sent = await sent_chat({"messages": messages, "tools": TOOLS, "logprobs": True, "top_logprobs": 3, "presence_penalty": 0.5})
    assert sent["messages"][0] == {"role": "user", "content": "what is this", "images": [png]}
    assert sent["messages"][1]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
    assert sent["messages"][2] == {"role": "tool", "content": "sunny", "tool_name": "get_weather"}
    assert sent["tools"] == TOOLS and sent["logprobs"] is True and sent["top_logprobs"] == 3
    assert sent["options"]["presence_penalty"] == 0.5


async def test_an_image_url_ollama_cannot_take_is_an_invalid_request():
    fake = FakeOllama()
    async with serve(fake.app) as url:
        backend = OllamaBackend(url)
        with pytest.raises(BackendError) as err:
            await collect(backend.chat({**CHAT, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]}]}))
        await backend.aclose()
    assert err.value.code == "invalid_request" and "data: URL" in err.value.message


async def test_a_tool_call_comes_back_as_one_delta_and_finishes_tool_calls():
    fake = FakeOllama(tool_call=("get_weather", {"city": "Paris"}))
    async with serve(fake.app) as url:
        backend = OllamaBackend(url)
        chunks = [c async for c in backend.chat({**CHAT, "tools": TOOLS})]
        await backend.aclose()
    (delta,) = [d for c in chunks for d in c.tool_calls or ()]
    assert delta == {"index": 0, "id": "call_k1w2x3y4", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    assert chunks[-1].finish_reason == "tool_calls"


async def test_logprobs_stream_back_chat_shaped():
    fake = FakeOllama(reply="a b")
    async with serve(fake.app) as url:
        backend = OllamaBackend(url)
        chunks = [c async for c in backend.chat({**CHAT, "logprobs": True, "top_logprobs": 2})]
        await backend.aclose()
    entries = [e for c in chunks for e in c.logprobs or ()]
    assert [e["token"] for e in entries] == ["a", " b"] and [len(e["top_logprobs"]) for e in entries] == [2, 2]


@pytest.mark.parametrize("version, caps, features, modalities", [
    ("0.5.7", ("completion", "tools"), {"json_object", "json_schema", "penalties", "tools"}, {"text"}),
    ("0.12.11", ("completion", "vision"), {"json_object", "json_schema", "penalties", "logprobs"}, {"text", "image"}),
    ("0.4.7", ("completion",), {"json_object", "penalties"}, {"text"}),
])
async def test_ollama_advertises_by_its_version_and_the_models_capabilities(version, caps, features, modalities):
    fake = FakeOllama(version=version, models={"m:latest": OllamaModel(capabilities=caps)})
    async with serve(fake.app) as url:
        backend = OllamaBackend(url)
        (ad,) = await backend.models()
        await backend.aclose()
    assert set(ad.features) == features and set(ad.modalities) == modalities
    assert "tool_choice" not in ad.features and "logit_bias" not in ad.features  # Ollama cannot force a call or bias tokens
