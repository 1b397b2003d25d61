"""One network, three control-plane replicas, each its own process on one PostgreSQL
database and one Redis namespace; three node daemons given every replica's URL; clients
spread across the replicas (chat completion streams, and job API jobs followed at another
replica). One replica is SIGKILLed mid-run and started again 3 s later; once it is back, a
second, shorter round of clients runs across all three.

Asserted, as in every chaos run (`bench/chaos.py` `check`): every job final, every [DONE]
stream exactly the engine's answer and charged, nothing run twice, ledger/check clean,
receipts equal to the clients' spend, no charge for a failed job, nothing left held; and
here: the jobs the killed replica drove were taken over, only those (no live replica's job
changed owner, by the replicas' logs and by the rows), and the restarted replica serves.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from bench.chaos import PG, REDIS, Cluster, Fleet, check, funded_keys
from tests.reliability.test_chaos import CREDIT, assert_nothing_lost

VICTIM = 1


async def services_or_skip() -> None:
    import asyncpg
    import redis.asyncio as aioredis

    try:
        conn = await asyncpg.connect(PG.replace("postgresql://", "postgres://"), timeout=3)
        await conn.close()
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG}: {exc} (a cluster cannot be tested without it)")
    r = aioredis.Redis.from_url(REDIS)
    try:
        await r.ping()
    except (OSError, aioredis.RedisError) as exc:
        pytest.skip(f"Redis not reachable at {REDIS}: {exc} (a cluster cannot be tested without it)")
    finally:
        await r.aclose()


async def kill_while_it_drives_jobs(cluster: Cluster, fleet: Fleet) -> str:
    """Once a quarter of the requests are answered and the victim owns open jobs (so the
    kill strands some), SIGKILL it; start it again 3 s later. Returns the killed id."""
    (victim_id,) = cluster.incarnations(VICTIM)
    while True:
        if len(fleet.done) >= fleet.jobs // 4:
            owned = await cluster.rows(f"SELECT count(*) AS n FROM jobs WHERE owner = '{victim_id}' AND status IN ('queued','assigned','running')")
            if owned[0]["n"] >= 2:
                break
        await asyncio.sleep(0.02)
    cluster.kill_plane(VICTIM)
    await asyncio.sleep(3.0)
    cluster.start_plane(VICTIM)
    return victim_id


async def test_three_replicas_lose_nothing_when_one_is_sigkilled_mid_run():
    await services_or_skip()
    cluster = Cluster(nodes=3, capacity=8, word_delay_s=0.01, replicas=3, quiet=not os.environ.get("INFERNET_CHAOS_VERBOSE"))
    try:
        await cluster.start()
        keys = await funded_keys(cluster, 6)
        fleet = Fleet(cluster.urls, keys, clients=24, jobs=150, cancel=0.1, min_words=8, max_words=30, seed=5, jobs_api=0.25)
        killer = asyncio.create_task(kill_while_it_drives_jobs(cluster, fleet))
        requests = await fleet.run()
        victim_id = await killer
        await cluster.wait_ready()  # all three replicas answer, the three nodes are online
        # Once it is back, the restarted replica serves its share like the others.
        after = await Fleet(cluster.urls, keys, clients=12, jobs=36, cancel=0, min_words=8, max_words=30, seed=6, jobs_api=0.25).run()
        requests += after
        rep = await check(cluster, "replica_kill (3 replicas)", requests, keys, CREDIT)
        incarnations = [cluster.incarnations(i) for i in range(3)]
        taken = cluster.takeovers()
        owners = {r["id"]: r["owner"] for r in await cluster.rows("SELECT id, owner FROM jobs")}
    finally:
        await cluster.aclose()
    print(rep.row(), rep.details[-3:])
    assert_nothing_lost(rep)
    assert rep.wrong_owner == 0 and rep.internal == 0
    assert incarnations[VICTIM][0] == victim_id and len(incarnations[VICTIM]) == 2
    assert all(len(i) == 1 for n, i in enumerate(incarnations) if n != VICTIM)
    # The stranded jobs were taken over, and every take-over was of the dead replica's.
    assert taken and {previous for _, _, previous in taken} == {victim_id}
    # Jobs sent to the living replicas stayed theirs; the restarted replica took new ones.
    for req in requests:
        if req.job_id in owners and req.replica != VICTIM:
            assert owners[req.job_id] == incarnations[req.replica][0]
    served_after = [r for r in after if r.replica == VICTIM]
    assert served_after and all(r.outcome == "done" and owners[r.job_id] == incarnations[VICTIM][1] for r in served_after)
    # Both APIs did real work on every replica, across the kill.
    by = {(r.api, r.replica) for r in requests if r.outcome == "done"}
    assert by == {(api, i) for api in ("openai", "jobs") for i in range(3)}
    assert rep.completed >= 130 and rep.jobs >= 170
