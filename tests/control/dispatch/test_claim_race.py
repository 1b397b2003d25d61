"""A node that goes away while its claim on a job commits: the job is retried elsewhere, out
of the client's sight (it used to crash the job with a KeyError: an internal error, 502)."""

from __future__ import annotations

import asyncio
import random

from infernet.control import Settings
from infernet.control.bus import LocalBus
from infernet.control.dispatch.driver import Driver
from infernet.control.dispatch.placement import Placement
from infernet.control.dispatch.router import RouteRequest
from infernet.control.health import Health
from infernet.control.health.verify import VerifyPolicy
from infernet.control.money.billing import Billing
from infernet.control.store import Store
from infernet.protocol import keys
from tests.control.fakes import FakeFleet


async def test_a_node_lost_while_the_claim_commits_is_a_retry_not_a_crash(tmp_path):
    store = await Store.open(f"sqlite:///{tmp_path / 'race.db'}")
    bus = LocalBus()
    health = Health()
    placement = Placement(bus, health, rng=random.Random(1))
    billing = Billing(store, keys.Identity.generate())
    driver = Driver(store, bus, placement, health, Settings(queue_timeout_s=2.0, verify=VerifyPolicy(canary_rate=0), seed=1), billing=billing)
    fleet = FakeFleet(bus)
    fleet.add("doomed")
    fleet.add("good")
    await billing.ledger.credit("k", 10_000_000)
    claim = store.jobs.queue_transition

    def claim_then_vanish(job_id, allowed, status, **kw):  # the node is SIGKILLed mid-claim
        fut = claim(job_id, allowed, status, **kw)
        if status == "assigned" and kw.get("node_id") == "doomed" and "doomed" in fleet.nodes:
            fleet.drop("doomed", "node disconnected")
        return fut

    store.jobs.queue_transition = claim_then_vanish  # type: ignore[method-assign]
    try:
        live, _ = await driver.submit("k", "chat", "m", {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}, route=RouteRequest("m", preferred_node="doomed"))
        assert live is not None
        await asyncio.wait_for(live.ended.wait(), 5)
        assert live.status == "completed" and live.node_id == "good", live.error
        await driver.settled()
        assert (await billing.ledger.client_view("k"))["held"] == 0 and await billing.ledger.check() == []
    finally:
        await driver.aclose()
        await store.close()
