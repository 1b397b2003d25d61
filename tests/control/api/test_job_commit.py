"""A job the job API answered 202 for is in the database: its client may take the id to
another replica at once (its stream, its status), and that replica reads the store."""

from __future__ import annotations

import asyncio

from infernet.backends.fake import FakeBackend
from infernet.control import Settings
from infernet.control.health.verify import VerifyPolicy
from tests.harness import Network


async def test_a_job_api_202_comes_only_once_the_job_row_is_committed(tmp_path):
    async with Network.start(tmp=tmp_path, settings=Settings(heartbeat_s=0.5, verify=VerifyPolicy(canary_rate=0))) as net:
        await net.add_node(FakeBackend(reply=" ".join(["w"] * 100), delay_s=0.02, slots=1))
        # A write nobody waits for would sit in the journal this long: only a commit the
        # request path awaits can put the row in the store before the test reads it.
        net.cp.store.journal._window_s = 30.0
        ask = {"model": "fake-model", "messages": [{"role": "user", "content": "x"}]}
        async with net.client() as c:
            first = asyncio.create_task(c.post("/api/v1/jobs", json=ask))
            await net.wait_for(lambda: any(live.state.node_id for live in net.cp.driver.jobs.values()))
            # The node's one slot is taken: this job waits in the queue, so no claim of its
            # own commits the insert along with it.
            r = await c.post("/api/v1/jobs", json=ask)
            assert r.status_code == 202
            row = await net.cp.store.jobs.get(r.json()["id"])
            assert row is not None and row["status"] == "queued" and row["origin"] == "jobs"
            assert (await first).status_code == 202
            net.cp.store.journal._window_s = 0.025
            for job_id in (r.json()["id"], (await first).json()["id"]):
                await c.post(f"/api/v1/jobs/{job_id}/cancel")
