"""Keep the fakes honest: same framing and fields as the engines' recorded exchanges, and
the adapters parse those recorded bytes verbatim."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from infernet.backends.ollama import OllamaBackend
from infernet.backends.openai_compat import OpenAICompatBackend
from infernet.protocol.messages import Usage
from tests.backends.fakes import FakeOllama, FakeOpenAIEngine, OllamaModel, serve

SAMPLES = Path(__file__).parent.parent / "fixtures" / "backends"


def shape(value: Any) -> Any:
    """Field names and JSON types, recursively; lists by the shape of their first item."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def sse_events(raw: bytes) -> list[Any]:
    out = []
    for block in raw.decode().split("\n\n"):
        block = block.strip()
        if block:
            assert block.startswith("data: "), block
            data = block[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def ndjson(raw: bytes) -> list[Any]:
    assert raw.endswith(b"\n")
    return [json.loads(line) for line in raw.decode().splitlines()]


def same_fields(sample: dict, ours: dict, *, ignore: set[str] = frozenset()) -> None:
    """Every field the engine sends, the fake sends with the same type (nested)."""
    s, o = shape(sample), shape(ours)

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict):
            assert isinstance(b, dict), f"{path}: the fake sends {b!r}, the engine an object"
            for k in a:
                if k in ignore:
                    continue
                assert k in b, f"{path}.{k}: the engine sends it, the fake does not"
                if a[k] != "NoneType" and b[k] != "NoneType":
                    walk(a[k], b[k], f"{path}.{k}")
        elif isinstance(a, list) and a and b:
            walk(a[0], b[0], path + "[]")
        else:
            assert a == b or "NoneType" in (a, b), f"{path}: engine {a}, fake {b}"

    walk(s, o, "$")


async def _fetch(url: str, method: str, path: str, body: Any = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url) as c:
        return await c.request(method, path, json=body)


# -- Ollama -------------------------------------------------------------------------------


async def test_ollama_fake_matches_the_samples():
    fake = FakeOllama(reply="Hello there !", registry={"llama3.2:latest": OllamaModel()})
    async with serve(fake.app) as url:
        chat = await _fetch(url, "POST", "/api/chat", {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]})
        assert chat.headers["content-type"] == "application/x-ndjson"
        sample, ours = ndjson((SAMPLES / "ollama_chat_stream.ndjson").read_bytes()), ndjson(chat.content)
        same_fields(sample[0], ours[0])
        same_fields(sample[-1], ours[-1])
        gen = ndjson((await _fetch(url, "POST", "/api/generate", {"model": "llama3.2", "prompt": "x"})).content)
        sample = ndjson((SAMPLES / "ollama_generate_stream.ndjson").read_bytes())
        same_fields(sample[0], gen[0])
        same_fields(sample[-1], gen[-1])
        for name, path, method, body in [
            ("ollama_tags.json", "/api/tags", "GET", None),
            ("ollama_ps.json", "/api/ps", "GET", None),
            ("ollama_version.json", "/api/version", "GET", None),
            ("ollama_show.json", "/api/show", "POST", {"model": "llama3.2"}),
        ]:
            same_fields(json.loads((SAMPLES / name).read_text()), (await _fetch(url, method, path, body)).json(),
                        ignore={"license", "general.basename", "general.file_type", "general.quantization_version", "llama.attention.head_count", "llama.attention.head_count_kv", "llama.block_count", "llama.feed_forward_length", "llama.vocab_size"})
        missing = await _fetch(url, "POST", "/api/chat", {"model": "nope", "messages": []})
        assert missing.status_code == 404
        same_fields(json.loads((SAMPLES / "ollama_error_404.json").read_text()), missing.json())
        fake.models.clear()
        pull = ndjson((await _fetch(url, "POST", "/api/pull", {"model": "llama3.2"})).content)
        sample = ndjson((SAMPLES / "ollama_pull_stream.ndjson").read_bytes())
        assert [set(e) for e in pull[:1]] == [set(e) for e in sample[:1]] and pull[-1] == sample[-1]
        same_fields(sample[2], pull[2])
        bad = ndjson((await _fetch(url, "POST", "/api/pull", {"model": "nope"})).content)
        assert bad == ndjson((SAMPLES / "ollama_pull_error.ndjson").read_bytes())
        fake.models["all-minilm:latest"] = OllamaModel(family="bert", capabilities=("embedding",))
        emb = await _fetch(url, "POST", "/api/embed", {"model": "all-minilm", "input": ["a", "b"]})
        same_fields(json.loads((SAMPLES / "ollama_embed.json").read_text()), emb.json())


# -- OpenAI-compatible engines -----------------------------------------------------------

ENGINES = {
    "vllm": ("meta-llama/Llama-3.1-8B-Instruct", "vllm_chat_stream.sse", {"continuous_usage_stats": True}),
    "sglang": ("qwen/qwen2.5-0.5b-instruct", "sglang_chat_stream.sse", {}),
    "llamacpp": ("SmolLM2-135M-Instruct.Q4_1.gguf", "llamacpp_server_chat_stream.sse", {}),
}


@pytest.mark.parametrize("flavour", list(ENGINES))
async def test_openai_engine_fakes_match_the_samples(flavour):
    model, stream_sample, opts = ENGINES[flavour]
    fake = FakeOpenAIEngine(flavour=flavour, model=model, reply="Hello there !")
    async with serve(fake.app) as url:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True, "stream_options": {"include_usage": True, **opts}}
        r = await _fetch(url, "POST", "/v1/chat/completions", body)
        assert r.headers["content-type"].startswith("text/event-stream")
        ours = sse_events(r.content)
        sample = sse_events((SAMPLES / stream_sample).read_bytes())
        assert ours[-1] == sample[-1] == "[DONE]"
        assert len(ours) == len(sample)
        for s, o in zip(sample[:-1], ours[:-1]):
            same_fields(s, o)
        models = (await _fetch(url, "GET", "/v1/models")).json()
        prefix = "llamacpp_server" if flavour == "llamacpp" else flavour
        same_fields(json.loads((SAMPLES / f"{prefix}_models.json").read_text()), models)
        natives = {"vllm": ["version"], "sglang": ["get_model_info", "get_server_info"], "llamacpp": ["props", "slots"]}[flavour]
        for name in natives:
            same_fields(json.loads((SAMPLES / f"{prefix}_{name}.json").read_text()) if name != "slots" else {"s": json.loads((SAMPLES / f"{prefix}_slots.json").read_text())},
                        (await _fetch(url, "GET", f"/{name}")).json() if name != "slots" else {"s": (await _fetch(url, "GET", "/slots")).json()})
        if flavour == "llamacpp":
            fake.loading = True
            loading = await _fetch(url, "GET", "/health")
            assert loading.status_code == 503
            assert loading.json() == json.loads((SAMPLES / "llamacpp_server_health_loading.json").read_text())
        else:
            err = await _fetch(url, "POST", "/v1/chat/completions", {**body, "model": "nope"})
            sample_err = json.loads((SAMPLES / f"{flavour}_error_{'404' if flavour == 'vllm' else '400'}.json").read_text())
            same_fields(sample_err, err.json(), ignore=set())


# -- the adapters on the recorded bytes themselves ---------------------------------------


def replay(routes: dict[tuple[str, str], tuple[int, str, bytes]]) -> Starlette:
    async def handler(request: Request) -> Response:
        status, media, body = routes.get((request.method, request.url.path), (404, "application/json", b'{"detail":"Not Found"}'))
        return Response(body, status_code=status, media_type=media)

    paths = {p for _, p in routes} | {"/health", "/props", "/slots", "/version", "/get_server_info", "/server_info", "/get_model_info"}
    return Starlette(routes=[Route(p, handler, methods=["GET", "POST", "DELETE"]) for p in paths])


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


async def test_ollama_adapter_parses_the_recorded_bytes():
    app = replay({
        ("GET", "/api/tags"): (200, "application/json", sample("ollama_tags.json")),
        ("POST", "/api/show"): (200, "application/json", sample("ollama_show.json")),
        ("POST", "/api/chat"): (200, "application/x-ndjson", sample("ollama_chat_stream.ndjson")),
        ("POST", "/api/generate"): (200, "application/x-ndjson", sample("ollama_generate_stream.ndjson")),
        ("POST", "/api/pull"): (200, "application/x-ndjson", sample("ollama_pull_stream.ndjson")),
    })
    async with serve(app) as url:
        backend = OllamaBackend(url)
        chunks = [c async for c in backend.chat({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]})]
        assert "".join(c.text for c in chunks) == "Hello there!" and chunks[-1].usage == Usage(10, 3)
        chunks = [c async for c in backend.complete({"model": "llama3.2", "prompt": "x"})]
        assert "".join(c.text for c in chunks) == "Once upon" and chunks[-1].finish_reason == "length" and chunks[-1].usage == Usage(4, 2)
        assert [e["status"] async for e in backend.pull("llama3.2")][-1] == "success"
        await backend.aclose()


@pytest.mark.parametrize("flavour", list(ENGINES))
async def test_openai_adapter_parses_the_recorded_bytes(flavour):
    model, stream_sample, _ = ENGINES[flavour]
    prefix = "llamacpp_server" if flavour == "llamacpp" else flavour
    routes = {
        ("GET", "/v1/models"): (200, "application/json", sample(f"{prefix}_models.json")),
        ("POST", "/v1/chat/completions"): (200, "text/event-stream", sample(stream_sample)),
        ("GET", "/health"): (200, "application/json", b"" if flavour != "llamacpp" else sample("llamacpp_server_health_ok.json")),
    }
    if flavour == "sglang":
        routes[("GET", "/get_server_info")] = (200, "application/json", sample("sglang_get_server_info.json"))
        routes[("GET", "/get_model_info")] = (200, "application/json", sample("sglang_get_model_info.json"))
    if flavour == "llamacpp":
        routes[("GET", "/props")] = (200, "application/json", sample("llamacpp_server_props.json"))
    async with serve(replay(routes)) as url:
        backend = OpenAICompatBackend(url, engine=flavour)
        ads = await backend.models()
        chunks = [c async for c in backend.chat({"model": ads[0].name, "messages": [{"role": "user", "content": "hi"}]})]
        assert "".join(c.text for c in chunks) == "Hello there!"
        assert chunks[-1].finish_reason == "stop" and chunks[-1].usage == Usage(12, 3)
        assert ads[0].context_length == {"vllm": 8192, "sglang": 32768, "llamacpp": 4096}[flavour]
        assert await backend.capacity() == {"vllm": None, "sglang": 48, "llamacpp": 4}[flavour]  # vLLM publishes none
        await backend.aclose()


@pytest.mark.parametrize("tokenizer", [True, False])
async def test_llamacpp_python_stream_without_usage_is_metered_by_a_probe_and_its_tokenizer(tokenizer):
    """llama-cpp-python's server (recorded live) streams no usage at all: the prompt is
    counted by a 1-token probe, the answer by the engine's tokenizer (its bytes without one),
    never by the number of streamed pieces."""
    routes = {
        ("GET", "/v1/models"): (200, "application/json", sample("llamacpp_python_models.json")),
        ("POST", "/v1/chat/completions"): (200, "text/event-stream", sample("llamacpp_python_chat_stream.sse")),
    }
    stream_bytes = sample("llamacpp_python_chat_stream.sse")
    probe_bytes = sample("llamacpp_python_chat.json")

    async def chat(request: Request) -> Response:
        body = json.loads(await request.body())
        if body.get("stream"):
            return Response(stream_bytes, media_type="text/event-stream")
        assert body["max_tokens"] == 1
        return Response(probe_bytes, media_type="application/json")

    counted: list[Any] = []

    async def count(request: Request) -> Response:  # llama-cpp-python's TokenizeInputCountResponse
        counted.append(json.loads(await request.body()))
        return Response(json.dumps({"count": 7}), media_type="application/json")

    app = replay(routes)
    app.router.routes.insert(0, Route("/v1/chat/completions", chat, methods=["POST"]))
    if tokenizer:
        app.router.routes.insert(0, Route("/extras/tokenize/count", count, methods=["POST"]))
    async with serve(app) as url:
        backend = OpenAICompatBackend(url, engine="llamacpp")
        ads = await backend.models()
        assert ads[0].name == "SmolLM2-135M-Instruct.Q4_1"
        assert (await backend.health()).ok  # no /health: ready when it lists models
        assert await backend.capacity() == 1  # no /props, no /slots
        chunks = [c async for c in backend.chat({"model": ads[0].name, "messages": [{"role": "user", "content": "Say hi"}]})]
        text = "".join(c.text for c in chunks)
        if tokenizer:
            assert counted == [{"input": text}] and chunks[-1].usage == Usage(32, 7)
        else:
            assert chunks[-1].usage == Usage(32, len(text.encode()))
        await backend.aclose()
