"""Chaos runs in small: real processes (control plane, node daemons, engines), concurrent
clients, one fault each, then every check of `bench/chaos.py` (the long runs live there).

Each run asserts that nothing was lost: every job final, every [DONE] stream exactly the
engine's answer and charged, nothing run twice, ledger/check clean, receipts equal to the
clients' spend, no charge for a failed job, no money left held.
"""

from __future__ import annotations

import asyncio

import pytest

from bench.chaos import FAULTS, Cluster, Fleet, check, funded_keys, run_one

CREDIT = 1000 * 1_000_000


def assert_nothing_lost(rep) -> None:
    assert rep.lost == 0, "\n".join(rep.details)
    assert rep.not_final == rep.mismatches == rep.double_runs == rep.charge_errors == rep.ledger_problems == rep.held == 0


@pytest.mark.parametrize("fault", [f for f in FAULTS if f != "none"])
async def test_a_fault_under_concurrent_streams_loses_nothing(fault):
    rep = await run_one(fault, clients=20, jobs=56, nodes=2, capacity=8, cancel=0.1, seed=3)
    print(rep.row(), rep.details[-1:])
    assert_nothing_lost(rep)
    assert rep.completed >= 15 and rep.jobs >= 40  # the run did real work on both sides of the fault
    if fault in ("engine_stall", "engine_garbage", "node_kill"):
        # Before the first token every failed attempt is retried out of sight: the client sees
        # an error only for a stream that already had output (it cannot be retried).
        assert rep.client_errors <= rep.failed


async def test_24_non_streamed_requests_in_flight_survive_a_node_sigkill():
    cluster = Cluster(nodes=2, capacity=16, word_delay_s=0.04)
    try:
        await cluster.start()
        keys = await funded_keys(cluster, 4)
        fleet = Fleet(cluster.url, keys, clients=24, jobs=24, cancel=0, stream=False, min_words=20, max_words=25, seed=7)
        running = asyncio.create_task(fleet.run())
        await asyncio.sleep(0.5)  # all 24 are on the nodes, about half on each, mid-answer
        assert not running.done()
        cluster.kill_node(0)
        requests = await running
        rep = await check(cluster, "node_kill (24 non-streamed)", requests, keys, CREDIT)
    finally:
        cluster.close()
    assert [r.outcome for r in requests] == ["done"] * 24  # 0 of 24 fail (the audit saw 4 fail)
    assert_nothing_lost(rep)
    assert rep.completed == 24 and rep.jobs == 24
