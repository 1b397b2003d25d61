"""A hold whose job row never came (its process died between the two commits) is released,
also when the control plane was restarted too soon after the crash to tell it at start."""

from __future__ import annotations

import asyncio
import time

from infernet.control import ControlPlane, Settings


async def test_a_hold_without_its_job_is_released_by_the_periodic_sweep(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    cp = await ControlPlane.open(url, Settings(heartbeat_s=0.2, orphan_hold_s=0.5), data_dir=tmp_path)
    await cp.start()
    try:
        await cp.billing.ledger.credit("key_a", 5_000_000)
        # What a killed run leaves: the hold committed, the job's row never written.
        refused = await cp.store.journal.submit(lambda conn: cp.billing.ledger.hold_in(conn, "chatcmpl-orphan", "key_a", 1234), urgent=True)
        assert refused is None and (await cp.billing.ledger.client_view("key_a"))["held"] == 1234
        deadline = time.monotonic() + 5
        while (await cp.billing.ledger.client_view("key_a"))["held"] and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        view = await cp.billing.ledger.client_view("key_a")
        assert (view["held"], view["available"]) == (0, 5_000_000)
        assert await cp.billing.ledger.check() == []
    finally:
        await cp.aclose()
