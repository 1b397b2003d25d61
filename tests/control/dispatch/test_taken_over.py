"""A replica whose lease on a job ran out (it was slow, or thought dead) may find the job
taken over and ended by another. Its client must then not get [DONE] for an answer the
books do not charge."""

from __future__ import annotations

import json

import sqlalchemy as sa

from infernet.backends.fake import FakeBackend
from infernet.control import Settings
from infernet.control.health.verify import VerifyPolicy
from infernet.control.store.schema import jobs
from tests.harness import Network


async def test_a_stream_whose_job_another_replica_took_over_ends_in_an_error_not_done(tmp_path):
    async with Network.start(tmp=tmp_path, settings=Settings(heartbeat_s=0.5, verify=VerifyPolicy(canary_rate=0))) as net:
        await net.add_node(FakeBackend(reply=" ".join(["w"] * 30), delay_s=0.02))
        key = await net.funded_key("alice")
        body = {"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "stream": True}
        events: list[dict] = []
        async with net.client(key) as c, c.stream("POST", "/v1/chat/completions", json=body) as r:
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    events.append({"done": True})
                    break
                events.append(json.loads(line[6:]))
                if len(events) == 3:  # mid-answer: another replica takes the job over
                    job_id = events[0]["id"]
                    await net.cp.store.journal.drain()
                    async with net.cp.store.engine.begin() as conn:
                        res = await conn.execute(jobs.update().where(jobs.c.id == job_id).values(owner="r-other"))
                        assert res.rowcount == 1
        assert {"done": True} not in events
        assert events[-1]["error"]["code"] == "replica_lost"
        async with net.client() as admin:
            await net.wait_for(lambda: job_id not in net.cp.driver.jobs)
            assert (await admin.get(f"/api/v1/jobs/{job_id}/receipt")).status_code == 404
            async with net.cp.store.engine.connect() as conn:
                row = (await conn.execute(sa.select(jobs.c.status).where(jobs.c.id == job_id))).first()
            assert row.status == "running"  # ours no longer: the replica that took it ends it
