"""`--backend auto`: engines are recognised by what they answer, picked by the tier."""

from __future__ import annotations

import time

from infernet.backends.detect import Found, choose, detect, probe
from tests.backends.fakes import FakeOllama, FakeOpenAIEngine, serve
from tests.harness import free_port


async def test_each_engine_is_recognised_by_its_answers_not_its_port():
    ollama, vllm = FakeOllama(), FakeOpenAIEngine(flavour="vllm", model="m/vllm")
    sglang, llama = FakeOpenAIEngine(flavour="sglang", model="m/sglang"), FakeOpenAIEngine(flavour="llamacpp", model="m.gguf")
    async with serve(ollama.app) as u1, serve(vllm.app) as u2, serve(sglang.app) as u3, serve(llama.app) as u4:
        ports = {name: int(u.rsplit(":", 1)[1]) for name, u in (("a", u1), ("b", u2), ("c", u3), ("d", u4))}
        ports["nothing"] = free_port()
        started = time.monotonic()
        found = await probe(ports=ports, timeout=0.5)
        assert time.monotonic() - started < 3
    assert [(f.kind, f.ready) for f in found] == [("ollama", True), ("vllm", True), ("sglang", True), ("llamacpp", True)]
    assert found[0].models == ("llama3.2:latest",) and found[1].models == ("m/vllm",)
    assert "llama.cpp server, 4 slot(s)" == found[3].detail


async def test_a_loading_llamacpp_is_found_but_not_ready():
    llama = FakeOpenAIEngine(flavour="llamacpp", model="m.gguf", loading=True)
    async with serve(llama.app) as url:
        (found,) = await probe(ports={"x": int(url.rsplit(":", 1)[1])})
    assert found.kind == "llamacpp" and not found.ready


def test_the_pick_follows_the_tier_advice():
    f = {k: Found(k, f"http://x/{k}", True, "", ("m",)) for k in ("ollama", "vllm", "sglang", "llamacpp")}
    everything = list(f.values())
    assert choose(everything, ">=48gb").kind == "vllm"
    assert choose([f["sglang"], f["ollama"]], ">=48gb").kind == "sglang"
    assert choose(everything, ">=24gb").kind == "ollama"
    assert choose([f["vllm"], f["llamacpp"]], ">=12gb").kind == "llamacpp"
    assert choose(everything, "cpu").kind == "ollama"
    empty_ollama = Found("ollama", "http://x", True, "", ())
    assert choose([empty_ollama, f["llamacpp"]], "cpu").kind == "llamacpp"  # no model: not picked
    assert choose([empty_ollama], "cpu") is None


async def test_nothing_running_falls_back_to_the_embedded_backend():
    kind, url, found = await detect("cpu", ports={"a": free_port(), "b": free_port()})
    assert (kind, url, found) == ("embedded", None, [])
