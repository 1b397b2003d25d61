"""What a control plane does at start for the jobs a previous run left behind."""

from __future__ import annotations

import time

from infernet.control.money.billing import Billing
from infernet.control.store import TERMINAL, Store

RESTARTED = "the control plane restarted while this job ran"
# A hold is committed just before its job's row (which rides the journal, committed within
# milliseconds): a hold with no job this much later belongs to a request that never got one.
ORPHAN_AGE_S = 60.0


async def recover(store: Store, billing: Billing | None) -> None:
    """Jobs left unfinished by a previous run end as failed. Holds of ended jobs go back,
    whatever their age: a job's settlement commits with its final row, so an ended job
    still holding money is one whose run died before it could release it."""
    for row in await store.jobs.unfinished():
        await store.jobs.finish(row["id"], ("queued", "assigned", "running"), "failed", [(1, "error", {"message": RESTARTED, "code": "restarted", "status": "failed"})], error=RESTARTED)
    if billing is not None:
        now = time.time()
        for job_id, created_at in await billing.ledger.open_holds():
            row = await store.jobs.get(job_id)
            if (row is not None and row["status"] in TERMINAL) or (row is None and created_at < now - ORPHAN_AGE_S):
                await billing.release(job_id)
