"""What a control plane does at start for the jobs a previous run left behind."""

from __future__ import annotations

import time

from infernet.control.money.billing import Billing
from infernet.control.store import TERMINAL, Store

RESTARTED = "the control plane restarted while this job ran"
# A hold is committed just before its job's row (which rides the journal, committed within
# milliseconds): a hold with no job this much later belongs to a request that never got one.
ORPHAN_AGE_S = 60.0


async def release_orphan_holds(store: Store, billing: Billing, age_s: float = ORPHAN_AGE_S) -> int:
    """Release holds older than `age_s` whose job row never came: the process that held them
    died in the few milliseconds between the hold's commit and its job's. Run at start and
    then periodically, since a restart sooner than `age_s` after the crash finds them too
    young. How many were released."""
    released = 0
    now = time.time()
    for job_id, created_at in await billing.ledger.open_holds():
        if created_at < now - age_s and await store.jobs.get(job_id) is None:
            await billing.release(job_id)
            released += 1
    return released


async def recover(store: Store, billing: Billing | None, orphan_age_s: float = ORPHAN_AGE_S) -> None:
    """Jobs left unfinished by a previous run end as failed. Holds of ended jobs go back,
    whatever their age: a job's settlement commits with its final row, so an ended job
    still holding money is one whose run died before it could release it."""
    for row in await store.jobs.unfinished():
        await store.jobs.finish(row["id"], ("queued", "assigned", "running"), "failed", [(1, "error", {"message": RESTARTED, "code": "restarted", "status": "failed"})], error=RESTARTED)
    if billing is not None:
        now = time.time()
        for job_id, created_at in await billing.ledger.open_holds():
            row = await store.jobs.get(job_id)
            if (row is not None and row["status"] in TERMINAL) or (row is None and created_at < now - orphan_age_s):
                await billing.release(job_id)
