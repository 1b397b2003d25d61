"""What a control plane does at start for the jobs a previous run left behind."""

from __future__ import annotations

import time

from infernet.control.money.billing import Billing
from infernet.control.store import TERMINAL, Store

RESTARTED = "the control plane restarted while this job ran"


async def recover(store: Store, billing: Billing | None) -> None:
    """Jobs left unfinished by a previous run end as failed; holds of ended jobs go back."""
    for row in await store.jobs.unfinished():
        await store.jobs.finish(row["id"], ("queued", "assigned", "running"), "failed", [(1, "error", {"message": RESTARTED, "code": "restarted", "status": "failed"})], error=RESTARTED)
    if billing is not None:
        for job_id in await billing.ledger.open_holds(older_than=time.time() - 5):
            row = await store.jobs.get(job_id)
            if row is None or row["status"] in TERMINAL:
                await billing.release(job_id)
