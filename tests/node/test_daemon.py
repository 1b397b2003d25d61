"""The node daemon against a real control plane: reconnects, duplicates, capacity."""

from __future__ import annotations

import asyncio

from infernet.backends.fake import FakeBackend
from infernet.control import create_app
from infernet.control.api.server import config as server_config
from infernet.node.daemon import Node, ws_url
from infernet.protocol import keys
from infernet.protocol.messages import Job, joined
from tests.harness import ADMIN_KEY, Network, _Server


def test_ws_url_keeps_path_and_scheme():
    assert ws_url("http://h:1") == "ws://h:1/api/v1/nodes/connect"
    assert ws_url("https://h/base/") == "wss://h/base/api/v1/nodes/connect"


async def test_node_reconnects_after_the_control_plane_restarts(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        running = await net.add_node(FakeBackend(reply="back again"))
        port = int(net.url.rsplit(":", 1)[1])
        net.server.should_exit = True
        await net.serving
        await net.wait_for(lambda: not running.node.status.connected)
        # A new control plane process on the same port and database.
        server = _Server(server_config(create_app(net.cp, admin_key=ADMIN_KEY), port=port))
        net.server, net.serving = server, asyncio.create_task(server.serve())
        await net.wait_for(lambda: running.node.identity.pubkey in net.cp.sessions.nodes, timeout=30)
        async with net.client() as c:
            r = await c.post("/v1/chat/completions", json={"model": "fake-model", "messages": [{"role": "user", "content": "x"}]})
        assert r.json()["choices"][0]["message"]["content"] == "back again"


async def test_duplicate_job_delivery_runs_once():
    engine = FakeBackend(reply="once")
    node = Node("http://127.0.0.1:9", keys.Identity.generate(), engine)
    node._capacity = 4
    job = Job(job_id="job-1", kind="chat", body={"model": "fake-model", "messages": [{"role": "user", "content": "x"}]})
    node._on_job(job)
    node._on_job(job)
    await asyncio.gather(*node._jobs.values())
    assert engine.calls == 1
    node._on_job(job)  # a late replay after it finished
    assert not node._jobs and engine.calls == 1


async def test_node_refuses_beyond_its_capacity():
    node = Node("http://127.0.0.1:9", keys.Identity.generate(), FakeBackend(delay_s=0.05, reply="a b c"))
    node._capacity = 1
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "x"}]}
    node._on_job(Job(job_id="a", kind="chat", body=body))
    node._on_job(Job(job_id="b", kind="chat", body=body))
    assert list(node._jobs) == ["a"]
    fails = [f for f in node._outbox if type(f).__name__ == "Fail"]
    assert fails and fails[0].job_id == "b" and fails[0].retryable and fails[0].code == "over_capacity"
    await asyncio.gather(*node._jobs.values())


async def test_tokens_of_interleaved_jobs_wait_as_one_frame_per_job_in_order():
    node = Node("http://127.0.0.1:9", keys.Identity.generate(), FakeBackend(reply="one two three four"))
    node._capacity = 4
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "x"}]}
    node._on_job(Job(job_id="a", kind="chat", body=body))
    node._on_job(Job(job_id="b", kind="chat", body=body))
    await asyncio.gather(*node._jobs.values())  # the socket was busy all along: nothing went
    order = [item if isinstance(item, str) else f"{type(item).__name__}:{item.job_id}" for item in node._outbox]
    for job in "ab":
        mine = [o for o in order if o.endswith(job)]
        assert mine == [f"Accept:{job}", job, f"Done:{job}"]  # one token entry, before the job's end
        frame = joined(node._tokens[job])
        assert frame.job_id == job and frame.text == "one two three four" and len(node._tokens[job]) > 1
