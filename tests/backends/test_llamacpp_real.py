"""The llama.cpp path for real: llama-cpp-python's OpenAI-compatible server running the
shipped SmolLM2 GGUF, driven by the adapter, by a node through the network, and by
`infernet up --backend llamacpp`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from infernet.backends.openai_compat import OpenAICompatBackend
from tests.harness import Network, free_port

pytestmark = pytest.mark.slow
SRC = str(Path(__file__).resolve().parents[2] / "src")
MODEL = "SmolLM2-135M-Instruct.Q4_1"
ASK = {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 12, "temperature": 0, "seed": 1}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from infernet.backends.embedded import find_gguf

    port = free_port()
    log_path = tmp_path_factory.mktemp("llamacpp") / "server.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(find_gguf()), "--host", "127.0.0.1", "--port", str(port), "--n_threads", "2", "--n_ctx", "2048"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(url + "/v1/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"llama_cpp.server did not start:\n{log_path.read_text()[-2000:]}")
        time.sleep(0.2)
    yield url, log_path
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def direct(url: str, body: dict) -> dict:
    """The same request straight to the engine, without streaming: its own usage."""
    r = httpx.post(url + "/v1/chat/completions", json={**body, "model": "x"}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


async def test_adapter_streams_with_the_engines_own_token_counts(engine):
    url, _ = engine
    backend = OpenAICompatBackend(url, engine="llamacpp")
    assert (await backend.health()).ok
    ads = await backend.models()
    assert [m.name for m in ads] == [MODEL]
    assert await backend.capacity() == 1
    chunks = [c async for c in backend.chat({**ASK, "model": MODEL})]
    await backend.aclose()
    text = "".join(c.text for c in chunks)
    ref = direct(url, ASK)
    assert text == ref["choices"][0]["message"]["content"]  # greedy: the same words
    assert chunks[-1].usage.prompt_tokens == ref["usage"]["prompt_tokens"]
    assert chunks[-1].usage.completion_tokens == ref["usage"]["completion_tokens"]


async def test_structured_output_and_token_counts_from_the_real_server(engine):
    """The adapter's llama.cpp dialect (`response_format: {type: json_object, schema}`) is
    what llama-cpp-python's server constrains by, and its tokenizer counts what it made."""
    url, _ = engine
    backend = OpenAICompatBackend(url, engine="llamacpp")
    (ad,) = await backend.models()
    assert set(ad.features) == {"json_object", "json_schema", "penalties", "logit_bias"}  # no /props: no logprobs, no tools
    schema = {"type": "object", "properties": {"capital": {"type": "string", "maxLength": 30}}, "required": ["capital"]}
    body = {**ASK, "model": MODEL, "max_tokens": 40, "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}}
    chunks = [c async for c in backend.chat(body)]
    text = "".join(c.text for c in chunks)
    assert set(json.loads(text)) == {"capital"}
    counted = await backend.count_tokens(text)
    await backend.aclose()
    ref = httpx.post(url + "/extras/tokenize/count", json={"input": text}, timeout=30).json()["count"]
    assert counted == ref and chunks[-1].usage.completion_tokens == ref


async def test_cancel_aborts_the_engine_request(engine):
    url, log_path = engine
    backend = OpenAICompatBackend(url, engine="llamacpp")
    before = log_path.read_text(errors="replace").count("Disconnected from client")
    stream = backend.chat({"model": MODEL, "messages": [{"role": "user", "content": "Write a long story about a dragon."}], "max_tokens": 400})
    n = 0
    async for chunk in stream:
        n += bool(chunk.text)
        if n == 3:
            break
    await stream.aclose()
    await backend.aclose()
    deadline = time.monotonic() + 20
    while log_path.read_text(errors="replace").count("Disconnected from client") == before:
        assert time.monotonic() < deadline, "the engine never saw the client go away"
        time.sleep(0.1)


async def test_a_node_serves_chat_through_the_network_with_real_usage(engine, tmp_path):
    url, _ = engine
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(OpenAICompatBackend(url, engine="llamacpp"))
        async with net.client() as c:
            assert MODEL in [m["id"] for m in (await c.get("/v1/models")).json()["data"]]
            r = await c.post("/v1/chat/completions", json={**ASK, "model": MODEL})
            assert r.status_code == 200, r.text
            body = r.json()
            lines = []
            async with c.stream("POST", "/v1/chat/completions", json={**ASK, "model": MODEL, "stream": True, "stream_options": {"include_usage": True}}) as s:
                async for line in s.aiter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        lines.append(json.loads(line[6:]))
    ref = direct(url, ASK)
    assert body["choices"][0]["message"]["content"] == ref["choices"][0]["message"]["content"]
    assert body["usage"] == ref["usage"]
    streamed = "".join((e["choices"][0]["delta"].get("content") or "") for e in lines if e["choices"])
    assert streamed == ref["choices"][0]["message"]["content"] and lines[-1]["usage"] == ref["usage"]


def test_infernet_up_serves_through_a_real_llamacpp_server(engine, tmp_path):
    url, _ = engine
    env = {**os.environ, "PYTHONPATH": SRC, "INFERNET_HOME": str(tmp_path / "home")}
    port = free_port()
    up = subprocess.Popen([sys.executable, "-m", "infernet", "up", "--port", str(port), "--backend", "llamacpp", "--backend-url", url],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = ""
        deadline = time.monotonic() + 90
        while "Ctrl-C" not in seen:
            line = up.stdout.readline()
            assert line or up.poll() is None, f"infernet up exited:\n{seen}"
            seen += line
            assert time.monotonic() < deadline, seen
        assert MODEL in seen
        chat = subprocess.run([sys.executable, "-m", "infernet", "chat", "--model", MODEL, "--max-tokens", "12", "--json", "What is the capital of France?"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert chat.returncode == 0, chat.stderr
        answer = json.loads(chat.stdout)
        assert answer["choices"][0]["message"]["content"].strip()
        assert answer["usage"]["prompt_tokens"] > 0 and 0 < answer["usage"]["completion_tokens"] <= 12
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(20)
        except subprocess.TimeoutExpired:
            up.kill()
