"""Which held money the periodic sweep gives back: that of ended jobs, and that of holds old
enough whose job row never came; never that of a job still open, nor a young orphan."""

from __future__ import annotations

import time

from infernet.control.money.ledger import Ledger
from infernet.control.store import Store


async def test_stale_holds_are_those_of_ended_jobs_and_of_old_orphans(tmp_path):
    store = await Store.open(f"sqlite:///{tmp_path / 's.db'}")
    try:
        ledger = Ledger(store.engine)
        await ledger.credit("k", 1_000_000)
        now = time.time()
        for job_id, at in (("open", now - 999), ("ended", now - 1), ("orphan-young", now - 1), ("orphan-old", now - 120)):
            await ledger.hold(job_id, "k", 10, now=at)
        await store.jobs.create(id="open", key_id="k", kind="chat", model="m", status="running", body={})
        await store.jobs.create(id="ended", key_id="k", kind="chat", model="m", status="failed", body={})
        assert sorted(await ledger.stale_holds(now - 60)) == ["ended", "orphan-old"]
        await ledger.release("ended")
        assert await ledger.stale_holds(now - 60) == ["orphan-old"]
    finally:
        await store.close()
