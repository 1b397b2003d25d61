"""The job driver: submit a job, then drive it through its life.

One task per job (`_drive`) owns its state. It feeds events into the pure
`jobs.apply(state, event)` and performs only the effects that `jobs.effects(old, new)` asks
for. Events come from placement (a slot, or why there is none), from the bus (the node's
frames, or its loss) and from the client (cancel). Token batches skip the inbox: they go
straight into the job's event log, so the relay path does no I/O and takes no lock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from infernet import logs
from infernet.control.bus import (
    Attach,
    Bus,
    Cancel,
    CancelJob,
    Dispatch,
    FleetDelta,
    NodeGone,
    NodeSeen,
    Relay,
    ToDriver,
    ToJob,
)
from infernet.control.dispatch import jobs as J
from infernet.control.dispatch.live import LiveJob
from infernet.control.dispatch.placement import Placement, Refused, Waiter
from infernet.control.dispatch.queue import QueueFull
from infernet.control.dispatch.router import RouteRequest
from infernet.control.health import Health, Timing
from infernet.control.health.verify import Verifier
from infernet.control.metrics import Metrics
from infernet.control.money.billing import Billing
from infernet.control.settings import Settings
from infernet.control.store import Store
from infernet.protocol import messages as M

log = logging.getLogger("infernet.control")

# Canaries and shadow runs are jobs of the control plane itself, under this key id. No API
# key maps to it, so nobody can act as it, and nothing run under it is billed to a client.
INTERNAL_KEY_ID = "key_internal"
OPEN = ("queued", "assigned", "running")
TAKEN_OVER = "another control-plane replica took this job over; it was not charged"


def event_of(msg: ToJob) -> J.Event:
    """A node's frame for a job as a state-machine event (token batches never get here)."""
    f = msg.frame
    if isinstance(f, M.Accept):
        return J.Accepted(msg.node_id)
    if isinstance(f, M.Done):
        receipt = (f.receipt, f.signature) if f.receipt is not None and f.signature else None
        return J.Done(msg.node_id, f.usage, f.finish_reason, f.result, receipt)
    assert isinstance(f, M.Fail)
    return J.Failed(msg.node_id, f.code, f.message, f.retryable, f.usage)


class Driver:
    def __init__(
        self, store: Store, bus: Bus, placement: Placement, health: Health, settings: Settings, *,
        billing: Billing | None = None, metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.placement = placement
        self.health = health
        self.settings = settings
        self.billing = billing  # None: jobs run unmetered
        self.metrics = metrics
        self.jobs: dict[str, LiveJob] = {}
        self.verifier = Verifier(settings.verify, self.run_internal, health.verdict, random.Random(settings.seed))
        self._tasks: set[asyncio.Task[Any]] = set()
        self._persisting: set[asyncio.Task[Any]] = set()
        self._on_node: dict[str, dict[str, str]] = {}  # node -> {job id: the node's session it was sent to}
        self._attached: dict[str, asyncio.Queue[Any]] = {}  # streams of jobs driven elsewhere
        bus.watch(self._on_fleet)
        bus.drive(self._on_driver)

    # -- submitting -----------------------------------------------------------------------

    async def submit(
        self, key_id: str, kind: str, model: str, body: dict[str, Any], idempotency_key: str | None = None,
        route: RouteRequest | None = None, *, purpose: str = "client", only: str | None = None, origin: str = "openai",
    ) -> tuple[LiveJob | None, dict[str, Any] | None]:
        """Create and start a job. With a reused idempotency key: (live or None, existing row).
        `origin`: the API it came through (`jobs`: its client may re-attach from anywhere).

        `route` carries the client's constraints; `only` pins an internal job to one node.
        """
        job_id = ("chatcmpl-" if kind == "chat" else "job-") + secrets.token_hex(12)
        billed = self.billing is not None and purpose == "client"
        if billed:  # the worst-case price is held before anything starts
            assert self.billing is not None
            body = await self.billing.admit(job_id, key_id, kind, model, body, self.placement.offers(model))
        row = dict(id=job_id, key_id=key_id, kind=kind, model=model, status="queued", body=body, idempotency_key=idempotency_key, origin=origin if purpose == "client" else "internal")
        if idempotency_key:
            # The unique (key, idempotency key) index decides which POST made the job.
            try:
                existing = await self.store.jobs.create(**row)
            except BaseException:
                if billed:
                    await self.billing.release(job_id)  # type: ignore[union-attr]
                raise
            if existing is not None:
                if billed:
                    await self.billing.release(job_id)  # type: ignore[union-attr]
                return self.jobs.get(existing["id"]), existing
            committed = None
        else:
            # A job of the job API is answered with its id, which its client may take to any
            # replica at once (its stream, its status): the 202 waits for the row's commit.
            urgent = row["origin"] == "jobs"
            inserted = self.store.jobs.queue_insert(urgent=urgent, **row)
            committed = inserted if urgent else None
        live = self.adopt(row, route, purpose=purpose, only=only, origin=row["origin"])
        if committed is not None:
            await committed
        if purpose == "client" and kind != "embedding" and self.verifier.canary_due():
            self._spawn(self.verifier.canary(model, [n.node_id for n in self.placement.serving(model)]))
        return live, None

    def adopt(self, row: dict[str, Any], route: RouteRequest | None = None, *, purpose: str = "client", only: str | None = None, origin: str = "openai") -> LiveJob:
        """Drive a job whose row is stored as queued (a new one, or one taken over from a
        replica that went away). Another replica may drive it too: the claim decides."""
        attempts = int(row.get("attempts") or 0)
        state = J.JobState(
            id=row["id"], key_id=row["key_id"], kind=row["kind"], model=row["model"], purpose=purpose,
            max_attempts=self.settings.max_attempts + attempts, attempts=attempts,
        )
        live = self.jobs[state.id] = LiveJob(state, row["body"])
        if origin == "jobs":  # its client may re-attach at another replica: delivery must be on record
            live.on_delivered = lambda: self.store.jobs.queue_delivered(state.id)
        self.bus.follow(state.id, lambda msg: self._on_message(live, msg))
        with logs.bind(job=state.id):  # the job's task and every line it logs carry its id
            self._spawn(self._drive(live, route or RouteRequest(state.model), only))
        return live

    def _on_message(self, live: LiveJob, msg: ToJob) -> None:
        if msg.node_id != live.listening:
            return  # an earlier attempt's node, or one that already sent its last frame
        live.last_frame = time.monotonic()
        frame = msg.frame
        if type(frame) is M.Tokens:  # the hot path: straight into the event log
            live.push_tokens(frame)
            return
        if type(frame) is not M.Accept:
            self._stop_listening(live)
            if type(frame) is M.Done:
                live.engine_s = live.engine_time(frame.engine_ms)
        live.inbox.put_nowait(event_of(msg))

    def _stop_listening(self, live: LiveJob) -> None:
        node, live.listening = live.listening, None
        if node is not None:
            on_node = self._on_node.get(node)
            if on_node is not None:
                on_node.pop(live.id, None)
                if not on_node:
                    del self._on_node[node]

    def _on_fleet(self, msg: FleetDelta) -> None:
        """A job's node is lost when its session ends or a reconnect replaces it, wherever its
        socket was held (a replica that died included)."""
        if isinstance(msg, NodeGone):
            node, alive, why = msg.node_id, None, msg.reason
        elif isinstance(msg, NodeSeen):
            node, alive, why = msg.info.node_id, msg.info.session, "node reconnected"
        else:
            return
        for job_id, session in list(self._on_node.get(node, {}).items()):
            if alive is not None and session == alive:
                continue
            if isinstance(msg, NodeGone) and session != msg.session:
                continue
            live = self.jobs.get(job_id)
            if live is not None and live.listening == node:
                self._stop_listening(live)
                live.inbox.put_nowait(J.Lost(node, why))

    # -- a client at another replica --------------------------------------------------------

    def _on_driver(self, msg: ToDriver) -> None:
        if isinstance(msg, CancelJob):
            live = self.jobs.get(msg.job_id)
            if live is not None:
                live.request_cancel(msg.reason)
        elif isinstance(msg, Attach):
            self._spawn(self._relay(msg))
        elif isinstance(msg, Relay):
            queue = self._attached.get(msg.stream)
            if queue is not None:
                queue.put_nowait(msg.event)

    async def _relay(self, msg: Attach) -> None:
        live = self.jobs.get(msg.job_id)
        if live is None:
            return self.bus.tell(msg.follower, Relay(msg.stream, None))
        async for event in live.follow(msg.after):  # a follower elsewhere takes it: it counts as delivered
            self.bus.tell(msg.follower, Relay(msg.stream, event))
        self.bus.tell(msg.follower, Relay(msg.stream, None))

    async def follow(self, job_id: str, after: int, owner: str | None) -> AsyncIterator[tuple[int, str, dict[str, Any]]]:
        """The job's events after `after`, live, from this replica or from the one driving it;
        ends when the job ends, or when no replica drives it (then the store has the rest)."""
        live = self.jobs.get(job_id)
        if live is not None:
            async for event in live.follow(after):
                yield event
            return
        if owner is None or owner == self.bus.replica:
            return
        stream = secrets.token_hex(8)
        queue: asyncio.Queue[tuple[int, str, dict[str, Any]] | None] = asyncio.Queue()
        self._attached[stream] = queue
        try:
            self.bus.tell(owner, Attach(job_id, after, self.bus.replica, stream))
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), self.settings.stall_timeout_s)
                except TimeoutError:
                    return  # its replica went away
                if event is None:
                    return
                yield tuple(event)  # type: ignore[misc]
        finally:
            self._attached.pop(stream, None)

    # -- driving --------------------------------------------------------------------------

    async def _drive(self, live: LiveJob, route: RouteRequest, only: str | None) -> None:
        live.deadline = time.monotonic() + self.settings.queue_timeout_s
        try:
            while not live.state.status.terminal:
                if live.state.status is J.JobStatus.QUEUED:
                    await self._place(live, route, only)
                else:
                    await self._attend(live)
        except Exception as exc:  # never leave a job hanging on a bug
            log.exception("job %s crashed", live.id)
            if not live.state.status.terminal:
                await self._step(live, J.Failed(None, "internal_error", f"internal error: {exc}"))

    async def _step(self, live: LiveJob, event: J.Event) -> None:
        old = live.state
        if live.delivered and not old.delivered:
            old = J.apply(old, J.Delivered())
        new = live.state = J.apply(old, event)
        for effect in J.effects(old, new):
            await self._perform(effect, live, old, new, event)

    async def _place(self, live: LiveJob, route: RouteRequest, only: str | None) -> None:
        """Find a node for a queued job, reserve its slot and claim the job: at once if a
        node is free, else after waiting in the fair queue."""
        s = live.state
        req = dataclasses.replace(route, exclude=route.exclude | s.tried) if s.tried else route
        pick = self.placement.pick(req, only)
        if pick is not None and (s.attempts or not self.placement.waiting(live.key_id)):
            node: str | None = pick.node_id
            self.placement.hold(pick.node_id)
        elif live.purpose != "client":
            return await self._step(live, J.Unplaceable(J.BUSY, "no free node for an internal job"))
        elif (why := self.placement.unplaceable(req)) is not None:
            return await self._step(live, why)
        else:
            try:
                waiter = self.placement.enqueue(live.id, live.key_id, req, front=bool(s.attempts))
            except QueueFull:
                return await self._step(live, J.Unplaceable(J.BUSY, "too many jobs are waiting", self.placement.retry_after(live.model)))
            try:
                node = await self._wait_for_slot(live, waiter)
            finally:
                self.placement.dequeue(waiter)
            if node is None:
                return
        if not await self.placement.confirm(node, live.id):
            await asyncio.sleep(0)  # the node left or filled up meanwhile: pick again
            return
        info = self.placement.infos.get(node)
        claimed = info is not None and await self._claim(live, node)
        if not claimed:
            await self.placement.release(node, live.id)
            self.health.abandoned(node)
            if info is not None:
                await self._step(live, J.ClaimRefused())
            return
        assert info is not None
        # The node may have gone while the claim committed: its terms come from how it was
        # seen, and the job frame that cannot reach it makes the attempt a retry.
        terms = await self.billing.terms(s, self.placement.offer(node, info)) if self.billing is not None and live.purpose == "client" else None
        await self._step(live, J.Placed(node, terms))

    async def _claim(self, live: LiveJob, node: str) -> bool:
        """Make this attempt the job's one run, durably, before the job frame leaves: the
        database decides, so two replicas (or a replica and a recovery sweep) never both run
        the job, and a control plane killed right after the send still finds the attempt it
        made (the node's run is then paid or retried, never unaccounted for). Urgent, so
        claims that are ready together share one commit."""
        return await self.store.jobs.queue_transition(live.id, ("queued",), "assigned", urgent=True, node_id=node, attempts=live.state.attempts + 1)

    async def _wait_for_slot(self, live: LiveJob, waiter: Waiter) -> str | None:
        """The node held for this waiter; None when the job ended meanwhile (cancelled, timed
        out, or its last possible node went away)."""
        while True:
            left = live.deadline - time.monotonic()
            if left <= 0 and not waiter.fut.done():
                self.placement.abandon(waiter)
                await self._step(live, J.TimedOut(self.placement.retry_after(live.model)))
                return None
            getter = asyncio.ensure_future(live.inbox.get())
            done, _ = await asyncio.wait({waiter.fut, getter}, timeout=max(left, 0), return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                event = getter.result()
                if isinstance(event, J.CancelRequested):
                    self.placement.abandon(waiter)
                    await self._step(live, event)
                    return None
                if waiter.fut not in done:
                    continue  # a stale frame from an earlier attempt
            else:
                getter.cancel()
            if waiter.fut.done():
                exc = waiter.fut.exception()
                if isinstance(exc, Refused):
                    await self._step(live, exc.why)
                    return None
                return waiter.fut.result()

    async def _attend(self, live: LiveJob) -> None:
        """The next event of a job on a node. A cancelled job waits only its grace period; a
        node that sends nothing for the job for `stall_timeout_s` has lost it."""
        while True:
            now = time.monotonic()
            if live.state.cancelling:
                timeout = max(0.0, live.cancel_deadline - now)
            else:
                timeout = max(0.0, max(live.last_frame, live.sent_at) + self.settings.stall_timeout_s - now)
            try:
                event = await asyncio.wait_for(live.inbox.get(), timeout)
            except TimeoutError:
                if live.state.cancelling:
                    event = J.TimedOut()
                elif time.monotonic() - max(live.last_frame, live.sent_at) < self.settings.stall_timeout_s:
                    continue  # tokens kept coming meanwhile
                else:
                    node = live.state.node_id
                    assert node is not None
                    self._stop_listening(live)
                    await self.bus.send(Cancel(node, live.id))  # free the engine, if it is still there
                    event = J.Lost(node, f"the node sent nothing for this job in {self.settings.stall_timeout_s:g} s")
            return await self._step(live, event)

    # -- effects --------------------------------------------------------------------------

    async def _perform(self, effect: J.Effect, live: LiveJob, old: J.JobState, new: J.JobState, event: J.Event) -> None:
        if effect is J.Effect.DISPATCH:
            assert new.node_id is not None
            live.placed.set()
            info = self.placement.infos.get(new.node_id)
            live.listening = new.node_id
            self._on_node.setdefault(new.node_id, {})[live.id] = info.session if info is not None else ""
            live.sent_at = time.monotonic()
            if info is None or not await self.bus.send(Dispatch(new.node_id, M.Job(job_id=live.id, kind=live.kind, body=live.body, receipt=new.terms))):
                self._stop_listening(live)  # the node left between its claim and the job frame
                live.inbox.put_nowait(J.Lost(new.node_id, "the node went away before the job reached it"))
        elif effect is J.Effect.MARK_RUNNING:
            self.store.jobs.queue_transition(live.id, ("assigned",), "running")
        elif effect is J.Effect.CANCEL_NODE:
            assert new.node_id is not None
            live.cancel_deadline = time.monotonic() + self.settings.cancel_grace_s
            await self.bus.send(Cancel(new.node_id, live.id))
        elif effect is J.Effect.END:
            await self._end(live, new)
        elif effect is J.Effect.RELEASE:
            assert old.node_id is not None
            await self._release(live, old.node_id, new, event)
        elif effect is J.Effect.REQUEUE:
            # Nobody saw the failed attempt's output: forget it, and give the next one its own
            # wait for a node.
            live.discard_attempt()
            live.deadline = time.monotonic() + self.settings.queue_timeout_s
            self.store.jobs.queue_transition(live.id, ("assigned", "running"), "queued", node_id=None)

    async def _release(self, live: LiveJob, node_id: str, new: J.JobState, event: J.Event) -> None:
        self._stop_listening(live)
        await self.placement.release(node_id, live.id)
        info = self.placement.infos.get(node_id)
        metered = live.metered
        tokens = metered.completion_tokens if metered is not None else 0  # never the node's own word
        outcome = J.outcome(event, new)
        # Billing for more than it served is cheating, but only where the node knew the count:
        # an engine cut short by a cancel often has not said it yet, and then the node reports
        # the bytes it produced, an upper bound (billed at the metered figure all the same).
        if metered is not None and metered.overclaimed and new.status is J.JobStatus.COMPLETED:
            self.health.verdict(node_id, False)
            outcome = J.Outcome.NEUTRAL
        self.health.judge(node_id, info.tier if info else None, outcome, Timing(live.sent_at, live.first_at, tokens))
        if new.status is J.JobStatus.COMPLETED:
            self.placement.observe_job(time.monotonic() - live.sent_at)
            if live.purpose == "client" and self.verifier.shadow_due(live.body):
                self._spawn(self.verifier.check(live.model, live.kind, live.body, node_id, live.output))

    async def _end(self, live: LiveJob, state: J.JobState) -> None:
        self.bus.unfollow(live.id)
        if state.error is not None and state.error.code == "claimed_elsewhere":
            live.publish()
            self.jobs.pop(live.id, None)  # another replica owns the row
            live.ended.set()
            return
        if self.billing is not None and live.purpose == "client" and state.status in (J.JobStatus.COMPLETED, J.JobStatus.CANCELLED):
            # Money moves: the final row and the settlement commit before the client sees the
            # end, so an answer that reached its client is charged and paid exactly once,
            # even if this process dies a moment later.
            if not await self._persist_end(live, state):
                # Another replica took the job over (this one's lease ran out) and ended it
                # its own way, so it is neither charged nor paid here: the client must not
                # get an end the books do not show.
                log.warning("job %s: another replica took it over before its end was stored; its client gets an error", live.id)
                live.reseal(msgspec.structs.replace(state, status=J.JobStatus.FAILED, error=J.JobError("replica_lost", TAKEN_OVER)))
            live.publish()
        else:
            # Nothing to charge: the client's last event never waits for the database. The job
            # stays readable from memory (`jobs`) until its final row is committed.
            live.publish()
            task = asyncio.create_task(self._persist_end(live, state))
            self._persisting.add(task)
            task.add_done_callback(self._persisting.discard)
        if self.metrics is not None:
            self.metrics.job_ended(live)

    async def _persist_end(self, live: LiveJob, state: J.JobState) -> bool:
        """Store the job's end and settle it; False when the store refused the final row
        (the job is no longer this replica's)."""
        billed = self.billing is not None and live.purpose == "client"
        receipt = None
        if billed:
            assert self.billing is not None
            delivered = live.output if state.status is J.JobStatus.COMPLETED else live.delivered_text
            receipt, live.metered = self.billing.countersign(state, live.body, live.output, delivered)
        usage = live.metered or state.usage
        finished = self.store.jobs.queue_finish(
            live.id, OPEN, str(state.status), live.seal(), urgent=receipt is not None,
            prompt_tokens=usage.prompt_tokens if usage else None, completion_tokens=usage.completion_tokens if usage else None,
            finish_reason=state.finish_reason, output=live.output if live.kind != "embedding" else None, result=state.result,
            error=state.error.message if state.error and state.status is not J.JobStatus.COMPLETED else None,
        )
        try:
            if billed:  # queued right behind the finish: one commit
                await self.billing.settle(live.id, receipt)  # type: ignore[union-attr]
            return await finished
        except Exception:
            log.exception("job %s: its end could not be stored", live.id)
            return True  # not known to be refused: the client keeps the end it ran to
        finally:
            self.jobs.pop(live.id, None)
            live.ended.set()

    # -- the control plane's own jobs -----------------------------------------------------

    async def run_internal(self, model: str, kind: str, body: dict[str, Any], *, prefer: str | None = None, only: str | None = None, exclude: set[str] | frozenset[str] = frozenset()) -> tuple[str, str] | None:
        """Run a job of the control plane's own (a canary or a reference answer) if a node is
        free for it now; it never waits in the queue ahead of clients."""
        route = RouteRequest(model, exclude=frozenset(exclude), preferred_node=prefer)
        if self.placement.pick(route, only) is None:
            return None
        live, _ = await self.submit(INTERNAL_KEY_ID, kind, model, body, route=route, purpose="canary", only=only)
        assert live is not None
        await live.finished.wait()
        if live.status is not J.JobStatus.COMPLETED or live.node_id is None:
            return None
        return live.node_id, live.output

    # -- housekeeping ---------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._reap_task)

    def _reap_task(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    @property
    def busy(self) -> bool:
        """Jobs or checks still running (tests wait for quiet)."""
        return bool(self._tasks)

    async def settled(self) -> None:
        """Wait until every job that has ended is committed."""
        await asyncio.gather(*self._persisting, return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.settled()  # jobs that already ended still get their final row written
