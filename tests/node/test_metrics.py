"""The node's own Prometheus metrics: counted from the frames it sends, per job."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families

from infernet.backends.fake import FakeBackend
from infernet.node.daemon import Node, NodeStatus
from infernet.node.metrics import NodeMetrics
from infernet.protocol import keys
from infernet.protocol.messages import Accept, Done, Fail, Heartbeat, Job, Usage


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_frames_count_jobs_tokens_errors_and_engine_time():
    status = NodeStatus(connected=True, active=2, capacity=4, backend_ok=True, models=["a", "b"])
    m = NodeMetrics(status)
    m.observe(Accept(job_id="j1"))
    m.observe(Done(job_id="j1", usage=Usage(3, 7)))
    m.observe(Accept(job_id="j2"))
    m.observe(Done(job_id="j2", usage=Usage(1, 2), finish_reason="cancelled"))
    m.observe(Fail(job_id="j3", message="full", code="over_capacity", retryable=True))
    m.observe(Heartbeat(active=0))
    s = _samples(m.render().decode())
    assert s[("infernet_node_jobs_total", (("status", "completed"),))] == 1
    assert s[("infernet_node_jobs_total", (("status", "cancelled"),))] == 1
    assert s[("infernet_node_jobs_total", (("status", "failed"),))] == 1
    assert s[("infernet_node_errors_total", (("code", "over_capacity"),))] == 1
    assert s[("infernet_node_tokens_total", (("direction", "input"),))] == 4
    assert s[("infernet_node_tokens_total", (("direction", "output"),))] == 9
    assert s[("infernet_node_engine_seconds_count", ())] == 2  # the refused job never started
    assert s[("infernet_node_connected", ())] == 1 and s[("infernet_node_active_jobs", ())] == 2
    assert s[("infernet_node_capacity", ())] == 4 and s[("infernet_node_models", ())] == 2 and s[("infernet_node_backend_up", ())] == 1


async def test_a_daemon_job_is_counted_and_served_over_http():
    node = Node("http://127.0.0.1:9", keys.Identity.generate(), FakeBackend(reply="a b c"))
    metrics = NodeMetrics(node.status)
    node.observe = metrics.observe
    node._capacity = 1
    node._on_job(Job(job_id="j", kind="chat", body={"model": "fake-model", "messages": [{"role": "user", "content": "x"}]}))
    await asyncio.gather(*node._jobs.values())
    port = metrics.listen(0)
    try:
        async with httpx.AsyncClient() as c:
            text = (await c.get(f"http://127.0.0.1:{port}/metrics")).text
    finally:
        metrics.close()
    s = _samples(text)
    assert s[("infernet_node_jobs_total", (("status", "completed"),))] == 1
    assert s[("infernet_node_tokens_total", (("direction", "output"),))] == 3
    assert s[("infernet_node_engine_seconds_count", ())] == 1
