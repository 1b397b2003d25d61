"""The node re-advertises what its engine serves: pulls, removals, engine restarts."""

from __future__ import annotations

from infernet.backends.ollama import OllamaBackend
from tests.backends.fakes import FakeOllama, OllamaModel, serve
from tests.harness import Network

ASK = {"messages": [{"role": "user", "content": "hi"}]}


async def test_pull_rm_and_engine_restart_reach_the_control_plane(tmp_path):
    fake = FakeOllama(registry={"qwen2.5:0.5b": OllamaModel(size=397821319, family="qwen2")})
    async with Network.start(tmp=tmp_path) as net:
        async with serve(fake.app) as url:
            port = int(url.rsplit(":", 1)[1])
            backend = OllamaBackend(url, parallel=1)
            node = await net.add_node(backend)
            conn = lambda: net.cp.sessions.nodes[node.node.identity.pubkey]  # noqa: E731
            assert conn().models == {"llama3.2:latest"}

            operator = OllamaBackend(url)  # what `infernet model pull` does, beside the node
            [e async for e in operator.pull("qwen2.5:0.5b")]
            await net.wait_for(lambda: "qwen2.5:0.5b" in conn().models, timeout=10)
            async with net.client() as c:
                r = await c.post("/v1/chat/completions", json={**ASK, "model": "qwen2.5:0.5b"})
                assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Hello there !"
            async with net.client() as c:
                nodes = (await c.get("/api/v1/nodes")).json()["data"]
            assert "qwen2.5:0.5b" in nodes[0]["models"]  # persisted, not only in memory

            await operator.delete("qwen2.5:0.5b")
            await net.wait_for(lambda: "qwen2.5:0.5b" not in conn().models, timeout=10)
            async with net.client() as c:
                r = await c.post("/v1/chat/completions", json={**ASK, "model": "qwen2.5:0.5b"})
                assert r.status_code == 404

            backend.parallel = 3  # the operator raised OLLAMA_NUM_PARALLEL and restarted
            await net.wait_for(lambda: conn().capacity == 3, timeout=10)
            await operator.aclose()

        # The engine is down: the node stays connected but advertises nothing.
        await net.wait_for(lambda: not conn().models, timeout=10)
        assert node.node.status.connected
        async with net.client() as c:
            r = await c.post("/v1/chat/completions", json={**ASK, "model": "llama3.2:latest"})
            assert r.status_code == 404

        async with serve(fake.app, port=port):  # back up, same port
            await net.wait_for(lambda: conn().models == {"llama3.2:latest"}, timeout=10)
            async with net.client() as c:
                r = await c.post("/v1/chat/completions", json={**ASK, "model": "llama3.2:latest"})
                assert r.status_code == 200
