"""Jobs whose replica went away, and money left held.

Every open job is leased to the replica driving it (`store/jobs.py`), which renews the
leases of all its jobs in one statement every few seconds. A sweep takes over jobs whose
lease ran out, one by one and atomically, so a job is never recovered by two replicas and a
living replica's jobs are never touched. What happens to a taken-over job follows the fault
rules:
- a job of the job API (its client may re-attach anywhere) whose output reached nobody is
  put back in the queue and driven here, invisibly, under its hold;
- any other (an OpenAI or Ollama request's client was connected to the replica that died, so
  it cannot get the answer now) ends `failed` with a clear error, and its hold goes back.
Either way it is charged once at most: money moves only with a job's final row.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from infernet.control import bounds
from infernet.control.money.billing import Billing
from infernet.control.store import Store

if TYPE_CHECKING:
    from infernet.control.dispatch.driver import Driver

log = logging.getLogger("infernet.control")

LOST = "the control plane replica running this job went away"
OPEN = ("queued", "assigned", "running")
# The job's event log died with its replica, and a follower may have read any number of its
# events: the final one is numbered last of all, so a client re-attaching with whatever
# Last-Event-ID it has still gets it (numbered 1, a follower past it waited for nothing).
LAST_EVENT = bounds.MAX_EVENT_ID
# A hold is committed just before its job's row (which rides the journal, committed within
# milliseconds): a hold with no job this much later belongs to a request that never got one.
ORPHAN_AGE_S = 60.0


async def sweep(store: Store, billing: Billing | None, driver: Driver, *, alone: bool = False) -> int:
    """Take over the jobs whose lease expired (`alone`: every open job: this control plane
    holds its database alone, so whoever ran them is gone). Returns how many were taken."""
    taken = 0
    for row in await store.jobs.expired(all_open=alone):
        if not await store.jobs.take_over(row["id"], force=alone):
            continue  # renewed, or another replica was first
        taken += 1
        if row["origin"] == "jobs" and not row["delivered"]:
            if await store.jobs.transition(row["id"], OPEN, "queued", owner=store.owner, node_id=None):
                log.info("job %s (of replica %s): its replica went away before any output was delivered; running it again", row["id"], row["owner"])
                driver.adopt({**row, "status": "queued"}, origin="jobs")
                continue
        if await store.jobs.finish(row["id"], OPEN, "failed", [(LAST_EVENT, "error", {"message": LOST, "code": "replica_lost", "status": "failed"})], error=LOST):
            log.info("job %s (of replica %s): its replica went away; failed", row["id"], row["owner"])
            if billing is not None:
                await billing.release(row["id"])
    return taken


async def release_ended_holds(store: Store, billing: Billing, orphan_age_s: float = ORPHAN_AGE_S) -> int:
    """Give back the holds of ended jobs, whatever their age (a job's settlement commits with
    its final row, so an ended job still holding money is one whose run died between the
    two), and holds older than `orphan_age_s` whose job row never came (the process died in
    the milliseconds between the hold's commit and its job's). Run at start and then
    periodically: a restart sooner than `orphan_age_s` after a crash finds orphans too young."""
    released = 0
    for job_id in await billing.ledger.stale_holds(time.time() - orphan_age_s):
        await billing.release(job_id)
        released += 1
    return released
