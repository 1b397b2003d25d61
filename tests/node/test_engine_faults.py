"""A misbehaving engine fails one job, clearly; the node stays up and serves the next."""

from __future__ import annotations

import asyncio
import json

import pytest

from infernet.backends.ollama import OllamaBackend
from infernet.backends.openai_compat import OpenAICompatBackend
from tests.backends.fakes import FAIL_MODES, FakeOllama, FakeOpenAIEngine, serve
from tests.harness import Network

ASK = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("mode", FAIL_MODES)
async def test_garbage_fails_one_job_and_the_node_stays_healthy(tmp_path, mode):
    fake = FakeOpenAIEngine(flavour="vllm", model="m", reply="fine answer", fail=mode)
    async with serve(fake.app) as url, Network.start(tmp=tmp_path) as net:
        running = await net.add_node(OpenAICompatBackend(url, engine="vllm"))
        async with net.client() as c:
            r = await c.post("/v1/chat/completions", json={**ASK, "model": "m"})
            assert r.status_code == 502 and "vllm" in r.json()["error"]["message"], r.text
            fake.fail = None
            r = await c.post("/v1/chat/completions", json={**ASK, "model": "m"})
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "fine answer"
        assert running.node.status.connected and running.node.status.jobs_failed == 1


async def test_a_stream_broken_after_tokens_ends_with_an_error_event(tmp_path):
    fake = FakeOllama(reply="one two three", fail="error_event")
    async with serve(fake.app) as url, Network.start(tmp=tmp_path) as net:
        await net.add_node(OllamaBackend(url))
        async with net.client() as c, c.stream("POST", "/v1/chat/completions", json={**ASK, "model": "llama3.2:latest", "stream": True}) as r:
            events = [json.loads(line[6:]) async for line in r.aiter_lines() if line.startswith("data: ") and line != "data: [DONE]"]
        assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": "one"}  # the role rides on the first text
        assert "unexpected EOF" in events[-1]["error"]["message"]


async def test_a_client_that_goes_away_aborts_the_engine_request(tmp_path):
    fake = FakeOllama(reply=" ".join(["w"] * 500), delay_s=0.01)
    async with serve(fake.app) as url, Network.start(tmp=tmp_path) as net:
        await net.add_node(OllamaBackend(url))
        async with net.client() as c, c.stream("POST", "/v1/chat/completions", json={**ASK, "model": "llama3.2:latest", "stream": True}) as r:
            n = 0
            async for line in r.aiter_lines():
                n += line.startswith("data: ")
                if n == 4:
                    break
        await asyncio.wait_for(fake.aborted.wait(), 10)
        assert fake.completed_streams == 0
