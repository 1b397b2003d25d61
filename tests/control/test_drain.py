"""Draining a replica (SIGTERM on `infernet control-plane serve`): the load balancer is told,
the streams running finish, the idle node leaves at once and the busy one as its job ends,
and no node is taken back while it drains."""

from __future__ import annotations

import asyncio
import json

from infernet.backends.fake import FakeBackend
from tests.harness import Network


async def test_a_draining_replica_finishes_its_streams_and_sends_its_nodes_away(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        busy = await net.add_node(FakeBackend(reply="one two three four five six", delay_s=0.15, slots=1))
        idle = await net.add_node(FakeBackend(models=("other-model",)))
        async with net.client() as c:
            body = {"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "stream": True}
            text: list[str] = []

            async def stream() -> str:
                async with c.stream("POST", "/v1/chat/completions", json=body) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("data: {"):
                            text.extend(ch["delta"].get("content") or "" for ch in json.loads(line[6:])["choices"])
                        if line == "data: [DONE]":
                            return "done"
                return "cut"

            streaming = asyncio.create_task(stream())
            await net.wait_for(lambda: text)  # the stream is running on `busy`
            drained = asyncio.create_task(net.cp.drain(grace_s=20))
            await net.wait_for(lambda: idle.node.identity.pubkey not in net.cp.sessions.nodes, timeout=2)
            health = await c.get("/healthz")
            assert (health.status_code, health.json()["status"]) == (503, "draining")
            assert busy.node.identity.pubkey in net.cp.sessions.nodes  # kept while its job runs
            assert await streaming == "done" and "".join(text) == "one two three four five six"
            assert await asyncio.wait_for(drained, 10) is True
            assert net.cp.sessions.nodes == {}
            await asyncio.sleep(1.0)  # the nodes try again (one URL each): refused while draining
            assert net.cp.sessions.nodes == {}
