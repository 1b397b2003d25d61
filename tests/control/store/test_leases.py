"""Job leases between replicas sharing one database (SQLite and PostgreSQL): each replica's
jobs are its own while it renews them; a sweep finds only expired ones; one take-over wins;
and the replica that lost a job can no longer write it."""

from __future__ import annotations

import asyncio

import pytest

from infernet.control.store import Store


@pytest.fixture
async def replicas(db_url):
    a = await Store.open(db_url, owner="r-a")
    b = await Store.open(db_url, owner="r-b", migrate=False)
    for s in (a, b):
        s.jobs.lease_s = 0.5
    yield db_url, a, b
    await b.close()
    await a.close()


def job(job_id: str) -> dict:
    return {"id": job_id, "key_id": "k", "kind": "chat", "model": "m", "status": "queued", "body": {}}


async def test_a_live_replicas_jobs_are_never_swept_and_an_expired_one_is_taken_once(replicas):
    url, a, b = replicas
    await a.jobs.queue_insert(**job("j1"))
    await a.jobs.queue_insert(**job("j2"))
    await a.journal.flush()
    assert await b.jobs.expired() == []  # fresh leases
    for _ in range(3):
        await asyncio.sleep(0.25)
        assert await a.jobs.renew() == 2  # one statement for all of a's open jobs
        assert await b.jobs.expired() == []  # a restarting b never touches a's jobs while a lives
    await asyncio.sleep(0.7)  # a is gone: no renewal
    assert sorted(r["id"] for r in await b.jobs.expired()) == ["j1", "j2"]
    c = await Store.open(url, owner="r-c", migrate=False)
    try:
        won = await asyncio.gather(b.jobs.take_over("j1"), c.jobs.take_over("j1"))
        assert sorted(won) == [False, True]  # two sweeps, one owner
    finally:
        await c.close()


async def test_a_replica_that_lost_its_job_can_no_longer_write_it(replicas):
    _, a, b = replicas
    await a.jobs.queue_insert(**job("j1"))
    await a.journal.flush()
    await asyncio.sleep(0.7)
    assert await b.jobs.take_over("j1")
    assert await a.jobs.queue_transition("j1", ("queued",), "assigned", urgent=True, node_id="n-a") is False
    assert await b.jobs.queue_transition("j1", ("queued",), "assigned", urgent=True, node_id="n-b") is True
    assert await a.jobs.renew() == 0  # nothing of a's is left to renew
    row = await b.jobs.get("j1")
    assert (row["owner"], row["node_id"], row["status"]) == ("r-b", "n-b", "assigned")
