"""vLLM, SGLang and llama.cpp adapters against fakes that speak each engine's dialect."""

from __future__ import annotations

import asyncio

import pytest

from infernet.backends.base import BackendError
from infernet.backends.openai_compat import BATCH_DEFAULT, OpenAICompatBackend
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
        expected = {"vllm": BATCH_DEFAULT, "sglang": 6, "llamacpp": 6}[flavour]
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
