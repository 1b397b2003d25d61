"""A job of the job API whose output reached a follower when its replica died is failed by
the replica that takes it over; a follower re-attaching from wherever it was gets that end."""

from __future__ import annotations

import sqlalchemy as sa

from infernet.control.dispatch.recovery import sweep
from infernet.control.store import Store
from infernet.control.store.schema import jobs


async def test_the_end_of_a_taken_over_job_comes_after_any_event_a_follower_saw(tmp_path):
    store = await Store.open(f"sqlite:///{tmp_path / 's.db'}", owner="r-alive")
    try:
        await store.jobs.create(id="job-1", key_id="k", kind="chat", model="m", status="running", body={}, origin="jobs")
        async with store.engine.begin() as conn:  # the dead replica's row: delivered, its lease run out
            await conn.execute(jobs.update().where(jobs.c.id == "job-1").values(owner="r-dead", lease_until=0.0, delivered=True))
        assert await sweep(store, None, driver=None) == 1  # type: ignore[arg-type]
        row = await store.jobs.get("job-1")
        assert (row["status"], row["owner"]) == ("failed", "r-alive")
        for seen in (0, 1, 57):  # the follower had read that many events of the dead replica's log
            (event,) = await store.jobs.events_after("job-1", seen)
            assert event[1] == "error" and event[2]["code"] == "replica_lost"
        async with store.engine.connect() as conn:
            assert (await conn.execute(sa.select(sa.func.count()).select_from(jobs))).scalar() == 1
    finally:
        await store.close()
