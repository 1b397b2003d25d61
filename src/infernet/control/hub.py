"""Connected nodes and the jobs running on them.

One task per job (`_drive`) owns that job's state transitions and persistence; node frames
only feed the job's inbox, except token batches, which go straight into the job's event log
so that the relay path does no I/O and takes no lock.

Placement: the router picks among nodes with a free slot (`router.choose` over the `Fleet`
index). When none is free the job waits in a bounded queue, fair across API keys; every
released slot is handed out at once, in queue order (`_dispatch`), so a newcomer never
overtakes a waiting job. Circuit breakers, reputation and verification live in their own
modules; the hub only feeds them outcomes and folds their state into each node's snapshot.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from infernet.control.billing import Billing
from infernet.control.circuit import Breaker, BreakerPolicy
from infernet.control.jobs import LiveJob
from infernet.control.metrics import Metrics
from infernet.control.queue import FairQueue, QueueFull
from infernet.control.reputation import Reputation
from infernet.control.router import Fleet, NodeSnapshot, RouteRequest, choose, eligible, feasible
from infernet.control.store import Store
from infernet.control.verify import Verifier, VerifyPolicy
from infernet.protocol import auth
from infernet.protocol.messages import (
    Accept,
    Cancel,
    Done,
    Fail,
    Heartbeat,
    Hello,
    Job,
    Tokens,
    Welcome,
    encode,
    node_decoder,
)

log = logging.getLogger("infernet.control")

CONNECT_PATH = "/api/v1/nodes/connect"
# Canaries and shadow runs are jobs of the control plane itself, under this key id. No API
# key maps to it, so nobody can act as it, and nothing run under it is billed to a client.
INTERNAL_KEY_ID = "key_internal"
# Failures that say nothing about the node's health.
HEARTBEAT_LOST = "node stopped heartbeating"
CLIENT_FAULTS = frozenset({"context_length_exceeded", "invalid_request", "cancelled", "node_lost"})


@dataclass
class Settings:
    heartbeat_s: float = 10.0
    missed_heartbeats: int = 3  # a node silent this many intervals is dropped
    queue_timeout_s: float = 30.0  # a job's total deadline to start: queueing and failover
    max_attempts: int = 3  # tries before the first token, across nodes
    cancel_grace_s: float = 5.0  # wait this long for a cancelled node's final usage
    max_queued: int = 1000  # jobs waiting for a slot, all keys together
    max_queued_per_key: int = 100
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    reputation_half_life_s: float = 3600.0
    verify: VerifyPolicy = field(default_factory=VerifyPolicy)
    seed: int | None = None  # routing and sampling randomness; fixed for reproducible runs


class NoNode(Exception):
    def __init__(self, message: str, code: str = "model_not_found") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def node_price(hello: Hello) -> int:
    """The node's advertised price per million output tokens (micro-USDC); 0 when unset."""
    price = hello.price or {}
    return int(price.get("output", max(price.values(), default=0)))


class NodeConn:
    def __init__(self, ws: WebSocket, hello: Hello, session: bytes) -> None:
        self.ws = ws
        self.id = hello.pubkey
        self.hello = hello
        self.session = session
        self.models = frozenset(m.name for m in hello.models)
        self.capacity = max(1, hello.capacity)
        self.price = node_price(hello)
        self.active: dict[str, LiveJob] = {}
        self.last_seen = time.monotonic()
        self.tokens_per_s = 0.0  # as the node reports it; routing uses what we measure
        self.heartbeats = 0
        self.closed = False

    async def send(self, frame: msgspec.Struct) -> None:
        try:
            await self.ws.send_bytes(encode(frame))
        except Exception:  # the reader notices the dead socket and reclaims the jobs
            log.debug("send to node %s failed", self.id[:12])


@dataclass(eq=False)
class _Waiter:
    job: LiveJob
    req: RouteRequest
    fut: asyncio.Future[NodeConn]


@dataclass
class Hub:
    store: Store
    settings: Settings = field(default_factory=Settings)
    billing: Billing | None = None  # None: jobs run unmetered

    def __post_init__(self) -> None:
        s = self.settings
        self.nodes: dict[str, NodeConn] = {}
        self.jobs: dict[str, LiveJob] = {}
        self.fleet = Fleet()
        self.queue: FairQueue[_Waiter] = FairQueue(s.max_queued, s.max_queued_per_key)
        self.breakers: dict[str, Breaker] = {}
        self.reputation = Reputation(s.reputation_half_life_s)
        self._rng = random.Random(s.seed)
        self.verifier = Verifier(s.verify, self._run_internal, self._verdict, random.Random(s.seed))
        self._tasks: set[asyncio.Task[Any]] = set()
        self._persisting: set[asyncio.Task[Any]] = set()
        self.metrics = Metrics(self)
        self._job_s = 0.0  # moving average of a job's run time, for Retry-After

    # -- views ----------------------------------------------------------------------------

    def models(self) -> dict[str, str]:
        """Model name -> kind, for every model an online node serves."""
        out: dict[str, str] = {}
        for conn in self.nodes.values():
            for m in conn.hello.models:
                out.setdefault(m.name, m.kind)
        return out

    def snapshots(self) -> list[NodeSnapshot]:
        return list(self.fleet.nodes.values())

    def model_kind(self, model: str) -> str | None:
        """"chat" or "embedding" for a model some online node serves, else None. From the
        fleet index: a request never walks the whole fleet."""
        for snap in self.fleet.serving(model):
            conn = self.nodes.get(snap.node_id)
            if conn is not None:
                return next((m.kind for m in conn.hello.models if m.name == model), "chat")
        return None

    def check_servable(self, model: str) -> str:
        """The model's kind; 503 when no node is online, 404 when none serves the model."""
        from infernet.control import errors

        if not self.nodes:
            raise errors.no_nodes()
        kind = self.model_kind(model)
        if kind is None:
            raise errors.model_not_found(model)
        return kind

    def breaker(self, node_id: str) -> Breaker:
        b = self.breakers.get(node_id)
        if b is None:
            b = self.breakers[node_id] = Breaker(self.settings.breaker)
        return b

    def _snapshot(self, conn: NodeConn) -> NodeSnapshot:
        now = time.monotonic()
        rec = self.reputation.of(conn.id, conn.hello.tier)
        return NodeSnapshot(
            node_id=conn.id,
            models=conn.models,
            tier=conn.hello.tier,
            capacity=conn.capacity,
            active=len(conn.active),
            tokens_per_s=rec.tokens_per_s,
            latency_ms=rec.ttft_ms,
            reputation=rec.score(now),
            price=conn.price,
            blocked_until=self.breaker(conn.id).blocked_until(now),
        )

    def _refresh(self, conn: NodeConn) -> None:
        if self.nodes.get(conn.id) is conn:
            self.fleet.put(self._snapshot(conn))

    # -- jobs -----------------------------------------------------------------------------

    async def submit(
        self,
        key_id: str,
        kind: str,
        model: str,
        body: dict[str, Any],
        idempotency_key: str | None = None,
        route: RouteRequest | None = None,
        *,
        purpose: str = "client",
        only: str | None = None,
    ) -> tuple[LiveJob | None, dict[str, Any] | None]:
        """Create and start a job. With a reused idempotency key, returns (live or None, existing row).

        `route` carries the client's constraints; `only` pins an internal job to one node.
        """
        job_id = ("chatcmpl-" if kind == "chat" else "job-") + secrets.token_hex(12)
        if self.billing is not None and purpose == "client":  # the worst-case price is held before anything starts
            body = await self.billing.admit(job_id, key_id, kind, model, body, (c.hello for c in self.nodes.values()))
        row = dict(id=job_id, key_id=key_id, kind=kind, model=model, status="queued", body=body, idempotency_key=idempotency_key)
        if idempotency_key:
            # The unique (key, idempotency key) index decides which POST made the job.
            try:
                existing = await self.store.create_job(**row)
            except BaseException:
                if self.billing is not None:
                    await self.billing.release(job_id)
                raise
            if existing is not None:
                if self.billing is not None:
                    await self.billing.release(job_id)
                return self.jobs.get(existing["id"]), existing
        else:
            self.store.queue_insert_job(**row)
        job = LiveJob(job_id, key_id, kind, model, body)
        job.purpose = purpose
        self.jobs[job_id] = job
        self._spawn(self._drive(job, route or RouteRequest(model), only))
        if purpose == "client" and kind != "embedding" and self.verifier.canary_due():
            self._spawn(self.verifier.canary(model, [n.node_id for n in self.fleet.serving(model)]))
        return job, None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._reap_task)

    def _reap_task(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    def _pick(self, req: RouteRequest, only: str | None) -> NodeSnapshot | None:
        req = dataclasses.replace(req, now=time.monotonic())
        if only is not None:
            snap = self.fleet.nodes.get(only)
            return snap if snap is not None and eligible(snap, req) else None
        return choose(self.fleet, req, self._rng)

    def _reserve(self, snap: NodeSnapshot, job: LiveJob) -> NodeConn:
        conn = self.nodes[snap.node_id]
        conn.active[job.id] = job
        self.breaker(conn.id).on_assign(time.monotonic())
        self._refresh(conn)
        return conn

    def _release(self, conn: NodeConn, job: LiveJob) -> None:
        if conn.active.pop(job.id, None) is not None:
            self._refresh(conn)
            self._dispatch()

    def _dispatch(self, prune: bool = False) -> None:
        """Hand free slots to waiting jobs in fair order; with `prune`, fail the waiters no
        online node could ever take (their last node went away)."""
        progress = True
        while progress and len(self.queue):
            progress = False
            for key, w in self.queue.order():
                pick = self._pick(w.req, None)
                if pick is not None:
                    self.queue.take(key, w)
                    w.fut.set_result(self._reserve(pick, w.job))
                    progress = True
                    break
                if prune and not feasible(self.fleet, w.req):
                    self.queue.remove(key, w)
                    w.fut.set_exception(self._no_node(w.req))
                    progress = True
                    break

    def _no_node(self, req: RouteRequest) -> NoNode:
        if len(self.fleet.serving(req.model)) > len(req.exclude):
            return NoNode(f"no online node serving {req.model} meets this job's constraints (tier, price, latency)", "no_eligible_node")
        return NoNode(f"no online node serves {req.model}", "model_not_found")

    def _retry_after(self, model: str) -> int:
        """Seconds until a retry likely finds a slot: the queue ahead over the model's capacity."""
        capacity = sum(n.capacity for n in self.fleet.serving(model)) or 1
        return max(1, min(60, math.ceil((self._job_s or 1.0) * (len(self.queue) + 1) / capacity)))

    async def _place(self, job: LiveJob, route: RouteRequest, only: str | None, tried: set[str], deadline: float) -> NodeConn | None:
        """A node for the job: at once if one is free, else after waiting in the fair queue.
        None when the client cancels meanwhile."""
        req = dataclasses.replace(route, exclude=route.exclude | tried) if tried else route
        pick = self._pick(req, only)
        if pick is not None and (tried or not self.queue.waiting(job.key_id)):
            return self._reserve(pick, job)
        if job.purpose != "client":
            raise NoNode("no free node for an internal job", "over_capacity")
        if not feasible(self.fleet, req):
            raise self._no_node(req)
        waiter = _Waiter(job, req, asyncio.get_running_loop().create_future())
        self.queue.push(job.key_id, waiter, front=bool(tried))
        self._dispatch()
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 and not waiter.fut.done():
                    raise TimeoutError
                getter = asyncio.ensure_future(job.inbox.get())
                done, _ = await asyncio.wait({waiter.fut, getter}, timeout=max(left, 0), return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    if getter.result()[0] == "cancel":
                        if waiter.fut.done() and waiter.fut.exception() is None:
                            conn = waiter.fut.result()
                            self.breaker(conn.id).on_abandon()
                            self._release(conn, job)
                        return None
                    if waiter.fut not in done:
                        continue  # a stale frame from an earlier attempt
                else:
                    getter.cancel()
                if waiter.fut.done():
                    return waiter.fut.result()
        finally:
            self.queue.remove(job.key_id, waiter)

    async def _drive(self, job: LiveJob, route: RouteRequest, only: str | None = None) -> None:
        s = self.settings
        deadline = time.monotonic() + s.queue_timeout_s
        tried: set[str] = set()
        attempts = 0
        last_error = "no node could serve the job"
        try:
            while True:
                try:
                    conn = await self._place(job, route, only, tried, deadline)
                except NoNode as exc:
                    if attempts:
                        error = {"message": f"failed after {attempts} attempts: {last_error}", "code": "node_failed"}
                    else:
                        error = {"message": exc.message, "code": exc.code}
                    await self._end(job, "failed", ("queued",), error=error)
                    return
                except (TimeoutError, QueueFull) as exc:
                    why = "too many jobs are waiting" if isinstance(exc, QueueFull) else "every node serving this model stayed busy"
                    await self._end(job, "failed", ("queued",), error={"message": why, "code": "over_capacity", "retry_after": self._retry_after(job.model)})
                    return
                if conn is None:  # cancelled while waiting
                    await self._end(job, "cancelled", ("queued",), error={"message": "cancelled before it started", "code": "cancelled"})
                    return
                attempts += 1
                # The claim is decided by the database, so two replicas (or a replica and a
                # recovery sweep) can never both run the job; the journal flushes it at once.
                if not await self.store.queue_transition(job.id, ("queued",), "assigned", urgent=True, node_id=conn.id, attempts=attempts):
                    # Another claimer owns the job now; this replica steps aside.
                    self.breaker(conn.id).on_abandon()
                    self._release(conn, job)
                    job.finish("failed", error={"message": "the job was claimed elsewhere", "code": "claimed_elsewhere"})
                    self.jobs.pop(job.id, None)
                    return
                job.status, job.node_id, job.attempts = "assigned", conn.id, attempts
                job.placed.set()
                job.terms = await self.billing.terms(job, conn.hello) if self.billing is not None and job.purpose == "client" else None
                job.sent_at = time.monotonic()
                await conn.send(Job(job_id=job.id, kind=job.kind, body=job.body, receipt=job.terms))
                outcome = await self._attend(job, conn)
                self._release(conn, job)
                self._judge(conn, job, outcome)
                if outcome is None:
                    if job.status == "completed" and job.purpose == "client" and self.verifier.shadow_due(job.body):
                        self._spawn(self.verifier.check(job.model, job.kind, job.body, conn.id, job.output))
                    return
                # A retryable failure before the first token: try again, invisibly; a node
                # that was merely full stays eligible, one that failed does not.
                last_error = outcome[1]
                if outcome[0] != "busy":
                    tried.add(conn.id)
                if attempts >= s.max_attempts or time.monotonic() >= deadline:
                    await self._end(job, "failed", ("assigned", "running"), error={"message": f"failed after {attempts} attempts: {last_error}", "code": "node_failed"})
                    return
                self.store.queue_transition(job.id, ("assigned", "running"), "queued", node_id=None)
                job.status, job.node_id = "queued", None
        except Exception as exc:  # never leave a job hanging on a bug
            log.exception("job %s crashed", job.id)
            await self._end(job, "failed", ("queued", "assigned", "running"), error={"message": f"internal error: {exc}", "code": "internal_error"})

    def _judge(self, conn: NodeConn, job: LiveJob, outcome: tuple[str, str] | None) -> None:
        """Feed one attempt's outcome to the node's circuit breaker and reputation."""
        now = time.monotonic()
        breaker = self.breaker(conn.id)
        rec = self.reputation.of(conn.id, conn.hello.tier)
        code = (job.error or {}).get("code")
        if outcome is None and job.status == "completed":
            breaker.on_success()
            ttft = (job.first_at or now) - job.sent_at
            stream_s = now - job.first_at if job.first_at else None
            rec.completed(now, ttft_s=ttft, tokens=(job.usage or {}).get("completion_tokens", 0), stream_s=stream_s)
            took = now - job.sent_at
            self._job_s = took if not self._job_s else 0.9 * self._job_s + 0.1 * took
        elif (outcome is not None and outcome[0] == "fail") or (outcome is None and job.status == "failed" and code not in CLIENT_FAULTS):
            breaker.on_failure(now)
            rec.failure(now)
        else:  # cancelled, a client's mistake, or a lost connection (counted once, in _drop)
            breaker.on_abandon()
        self._refresh(conn)

    def _verdict(self, node_id: str, passed: bool) -> None:
        now = time.monotonic()
        self.reputation.of(node_id).verification(now, passed)
        if not passed:
            self.breaker(node_id).on_failure(now, severe=True)
        conn = self.nodes.get(node_id)
        if conn is not None:
            self._refresh(conn)

    async def _run_internal(self, model: str, kind: str, body: dict[str, Any], *, prefer: str | None = None, only: str | None = None, exclude: set[str] | frozenset[str] = frozenset()) -> tuple[str, str] | None:
        """Run a job of the control plane's own (a canary or a reference answer) if a node is
        free for it now; it never waits in the queue ahead of clients."""
        route = RouteRequest(model, exclude=frozenset(exclude), preferred_node=prefer)
        if self._pick(route, only) is None:
            return None
        job, _ = await self.submit(INTERNAL_KEY_ID, kind, model, body, route=route, purpose="canary", only=only)
        assert job is not None
        await job.finished.wait()
        if job.status != "completed" or job.node_id is None:
            return None
        return job.node_id, job.output

    async def _attend(self, job: LiveJob, conn: NodeConn) -> tuple[str, str] | None:
        """Follow one attempt. Returns (why, message) when the job should go to another node:
        why is "fail" (the node said so) or "lost" (the node went away)."""
        cancel_deadline: float | None = None
        while True:
            timeout = None if cancel_deadline is None else max(0.0, cancel_deadline - time.monotonic())
            try:
                kind, value = await asyncio.wait_for(job.inbox.get(), timeout)
            except TimeoutError:
                await self._end(job, "cancelled", ("assigned", "running"), error={"message": "cancelled", "code": "cancelled"})
                return None
            if kind == "accept":
                job.status = "running"
                self.store.queue_transition(job.id, ("assigned",), "running")
            elif kind == "done":
                done: Done = value
                job.usage = {"prompt_tokens": done.usage.prompt_tokens, "completion_tokens": done.usage.completion_tokens, "total_tokens": done.usage.total_tokens}
                job.finish_reason = done.finish_reason
                job.result = done.result
                job.signed = (done.receipt, done.signature) if done.receipt is not None and done.signature else None
                if cancel_deadline is not None or done.finish_reason == "cancelled":
                    await self._end(job, "cancelled", ("assigned", "running"), error={"message": "cancelled", "code": "cancelled"})
                else:
                    await self._end(job, "completed", ("assigned", "running"))
                return None
            elif kind == "fail":
                fail: Fail = value
                if fail.usage is not None:
                    job.usage = {"prompt_tokens": fail.usage.prompt_tokens, "completion_tokens": fail.usage.completion_tokens, "total_tokens": fail.usage.total_tokens}
                if cancel_deadline is not None:
                    await self._end(job, "cancelled", ("assigned", "running"), error={"message": "cancelled", "code": "cancelled"})
                    return None
                if fail.retryable and not job.delivered:
                    job.usage = None
                    return ("busy" if fail.code == "over_capacity" else "fail", fail.message)
                await self._end(job, "failed", ("assigned", "running"), error={"message": fail.message, "code": fail.code})
                return None
            elif kind == "lost":
                if cancel_deadline is not None:
                    await self._end(job, "cancelled", ("assigned", "running"), error={"message": "cancelled", "code": "cancelled"})
                    return None
                if not job.delivered:
                    return ("lost", str(value))
                # Nothing is metered: the node that vanished reported no usage for the part it
                # delivered, so the client is not charged for this job.
                await self._end(job, "failed", ("assigned", "running"), error={"message": f"the node serving this job went away mid-stream ({value})", "code": "node_lost"})
                return None
            elif kind == "cancel" and cancel_deadline is None:
                cancel_deadline = time.monotonic() + self.settings.cancel_grace_s
                await conn.send(Cancel(job_id=job.id))

    async def _end(self, job: LiveJob, status: str, allowed: tuple[str, ...], error: dict[str, Any] | None = None) -> None:
        # Publish first: the client's last event never waits for the database. The job stays
        # readable from memory (`hub.jobs`) until its final row is committed, so whoever sees
        # the final event can always read the final state.
        job.finish(status, error=error)
        self.metrics.job_ended(job)
        task = asyncio.create_task(self._persist_end(job, status, allowed))
        self._persisting.add(task)
        task.add_done_callback(self._persisting.discard)

    async def _persist_end(self, job: LiveJob, status: str, allowed: tuple[str, ...]) -> None:
        usage = job.usage or {}
        finished = self.store.queue_finish(
            job.id,
            allowed,
            status,
            job.events,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            finish_reason=job.finish_reason,
            output=job.output if job.kind != "embedding" else None,
            result=job.result,
            error=(job.error or {}).get("message") if status != "completed" else None,
        )
        try:
            if self.billing is not None and job.purpose == "client":  # queued right behind the finish: one commit
                await self.billing.settle(job, status)
            await finished
        finally:
            self.jobs.pop(job.id, None)
            job.ended.set()

    # -- node connections -----------------------------------------------------------------

    async def serve_node(self, ws: WebSocket) -> None:
        try:
            signed = await self.store.check_signed(ws.headers.get(auth.AUTH_HEADER), "GET", ws.url)
        except auth.AuthError as exc:
            log.warning("node connection refused: %s", exc)
            await ws.close(code=4401, reason=str(exc)[:120])
            return
        await ws.accept()
        session = os.urandom(16)
        await ws.send_text(encode(Welcome(session=session.hex(), node_id=signed.pubkey, heartbeat_s=self.settings.heartbeat_s)).decode())
        verifier = auth.FrameVerifier(signed.pubkey, session)
        conn: NodeConn | None = None
        try:
            first = node_decoder.decode(verifier.open(await ws.receive_bytes()))
            if not isinstance(first, Hello) or first.pubkey != signed.pubkey:
                raise auth.AuthError("the first frame must be a hello for the signing key")
            conn = NodeConn(ws, first, session)
            old = self.nodes.get(conn.id)
            if old is not None:
                self._drop(old, "node reconnected")
            self.nodes[conn.id] = conn
            self._refresh(conn)
            self._dispatch()
            await self.store.upsert_node(
                conn.id,
                name=first.name,
                backend=first.backend,
                tier=first.tier,
                models=[msgspec.to_builtins(m) for m in first.models],
                capacity=conn.capacity,
                hardware=first.hardware,
                status="online",
            )
            log.info("node %s online: %s on %s, tier %s", conn.id[:12], sorted(conn.models), first.backend, first.tier)
            while True:
                frame = node_decoder.decode(verifier.open(await ws.receive_bytes()))
                conn.last_seen = time.monotonic()
                self._on_frame(conn, frame)
        except (WebSocketDisconnect, RuntimeError):
            pass
        except (auth.AuthError, msgspec.DecodeError) as exc:
            log.warning("closing node %s: %s", signed.pubkey[:12], exc)
            try:
                await ws.close(code=4400, reason=str(exc)[:120])
            except RuntimeError:
                pass
        finally:
            if conn is not None and self.nodes.get(conn.id) is conn:
                self._drop(conn, "node disconnected")
                try:
                    await self.store.set_node_status(conn.id, "offline")
                except Exception:
                    log.exception("could not mark node offline")

    def _on_frame(self, conn: NodeConn, frame: Any) -> None:
        if isinstance(frame, Tokens):
            job = conn.active.get(frame.job_id)
            if job is not None:
                job.push_text(frame.text)
        elif isinstance(frame, Heartbeat):
            conn.heartbeats += 1
            conn.tokens_per_s = frame.tokens_per_s
            changed = False
            if frame.models is not None:
                conn.models = frozenset(m.name for m in frame.models)
                conn.hello = msgspec.structs.replace(conn.hello, models=frame.models)
                changed = True
            if frame.capacity is not None and max(1, frame.capacity) != conn.capacity:
                conn.capacity = max(1, frame.capacity)
                changed = True
            if changed:  # a pull, a removal or an engine restart on the node
                self._refresh(conn)
                self._dispatch(prune=True)
                self._spawn(self.store.upsert_node(conn.id, models=[msgspec.to_builtins(m) for m in conn.hello.models], capacity=conn.capacity))
        elif isinstance(frame, (Accept, Done, Fail)):
            job = conn.active.get(frame.job_id)
            if job is not None:  # a frame for a job this node no longer holds is a duplicate
                job.inbox.put_nowait((type(frame).__name__.lower(), frame))

    def _drop(self, conn: NodeConn, reason: str) -> None:
        if conn.closed:
            return
        conn.closed = True
        if self.nodes.get(conn.id) is conn:
            del self.nodes[conn.id]
            self.fleet.remove(conn.id)
        if conn.active or reason == HEARTBEAT_LOST:
            # One failure per drop, however many jobs it took down with it.
            now = time.monotonic()
            self.breaker(conn.id).on_failure(now)
            self.reputation.of(conn.id, conn.hello.tier).failure(now)
        for job in list(conn.active.values()):
            job.inbox.put_nowait(("lost", reason))
        conn.active.clear()
        self._dispatch(prune=True)

    async def reap(self) -> None:
        """Drop nodes that stopped heartbeating (their jobs go back to the queue), and give
        waiting jobs the nodes whose circuit cooldown ran out."""
        limit = self.settings.heartbeat_s * self.settings.missed_heartbeats
        while True:
            await asyncio.sleep(min(1.0, self.settings.heartbeat_s / 2))
            now = time.monotonic()
            for conn in list(self.nodes.values()):
                if now - conn.last_seen > limit:
                    log.warning("node %s missed %d heartbeats; dropping it", conn.id[:12], self.settings.missed_heartbeats)
                    self._drop(conn, HEARTBEAT_LOST)
                    self._spawn(self._close(conn))
            self._dispatch()

    async def _close(self, conn: NodeConn) -> None:
        try:
            await conn.ws.close(code=4408, reason="heartbeat timeout")
        except Exception:
            pass
        await self.store.set_node_status(conn.id, "offline")

    async def recover(self) -> None:
        """Jobs left unfinished by a previous run of this control plane end as failed."""
        for row in await self.store.unfinished_jobs():
            await self.store.finish_job(
                row["id"], ("queued", "assigned", "running"), "failed", [(1, "error", {"message": "the control plane restarted while this job ran", "code": "restarted", "status": "failed"})],
                error="the control plane restarted while this job ran",
            )
        if self.billing is not None:  # holds of jobs that ended without settling go back
            for job_id in await self.billing.ledger.open_holds(older_than=time.time() - 5):
                row = await self.store.get_job(job_id)
                if row is None or row["status"] in ("completed", "failed", "cancelled"):
                    await self.billing.release(job_id)

    async def settled(self) -> None:
        """Wait until every job that has ended is committed."""
        await asyncio.gather(*self._persisting, return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.settled()  # jobs that already ended still get their final row written
