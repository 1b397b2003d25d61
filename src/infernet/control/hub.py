"""Connected nodes and the jobs running on them.

One task per job (`_drive`) owns that job's state transitions and persistence; node frames
only feed the job's inbox, except token batches, which go straight into the job's event log
so that the relay path does no I/O and takes no lock.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from infernet.control.billing import Billing
from infernet.control.jobs import LiveJob
from infernet.control.router import NodeSnapshot, RouteRequest, choose
from infernet.control.store import Store
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


@dataclass
class Settings:
    heartbeat_s: float = 10.0
    missed_heartbeats: int = 3  # a node silent this many intervals is dropped
    queue_timeout_s: float = 30.0  # how long a job may wait for a free node
    max_attempts: int = 3  # tries before the first token, across nodes
    cancel_grace_s: float = 5.0  # wait this long for a cancelled node's final usage


class NoNode(Exception):
    pass


class NodeConn:
    def __init__(self, ws: WebSocket, hello: Hello, session: bytes) -> None:
        self.ws = ws
        self.id = hello.pubkey
        self.hello = hello
        self.session = session
        self.models = frozenset(m.name for m in hello.models)
        self.capacity = max(1, hello.capacity)
        self.active: dict[str, LiveJob] = {}
        self.last_seen = time.monotonic()
        self.tokens_per_s = 0.0
        self.closed = False

    def snapshot(self) -> NodeSnapshot:
        return NodeSnapshot(
            node_id=self.id,
            models=self.models,
            tier=self.hello.tier,
            capacity=self.capacity,
            active=len(self.active),
            tokens_per_s=self.tokens_per_s,
        )

    async def send(self, frame: msgspec.Struct) -> None:
        try:
            await self.ws.send_bytes(encode(frame))
        except Exception:  # the reader notices the dead socket and reclaims the jobs
            log.debug("send to node %s failed", self.id[:12])


@dataclass
class Hub:
    store: Store
    settings: Settings = field(default_factory=Settings)
    billing: Billing | None = None  # None: jobs run unmetered

    def __post_init__(self) -> None:
        self.nodes: dict[str, NodeConn] = {}
        self.jobs: dict[str, LiveJob] = {}
        self._freed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- views ----------------------------------------------------------------------------

    def models(self) -> dict[str, str]:
        """Model name -> kind, for every model an online node serves."""
        out: dict[str, str] = {}
        for conn in self.nodes.values():
            for m in conn.hello.models:
                out.setdefault(m.name, m.kind)
        return out

    def snapshots(self) -> list[NodeSnapshot]:
        return [c.snapshot() for c in self.nodes.values()]

    def check_servable(self, model: str) -> None:
        from infernet.control import errors

        if not self.nodes:
            raise errors.no_nodes()
        if model not in self.models():
            raise errors.model_not_found(model)

    # -- jobs -----------------------------------------------------------------------------

    async def submit(self, key_id: str, kind: str, model: str, body: dict[str, Any], idempotency_key: str | None = None) -> tuple[LiveJob | None, dict[str, Any] | None]:
        """Create and start a job. With a reused idempotency key, returns (None, existing row)."""
        job_id = ("chatcmpl-" if kind == "chat" else "job-") + secrets.token_hex(12)
        if self.billing is not None:  # the worst-case price is held before anything starts
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
        self.jobs[job_id] = job
        self._spawn(self._drive(job))
        return job, None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _acquire(self, job: LiveJob, exclude: set[str], deadline: float) -> NodeConn:
        while True:
            if not any(job.model in c.models for c in self.nodes.values() if c.id not in exclude):
                raise NoNode("no online node serves this model")
            pick = choose(self.snapshots(), RouteRequest(job.model, frozenset(exclude)))
            if pick is not None:
                conn = self.nodes[pick.node_id]
                # Take the slot before any await, or two jobs routed in the same instant
                # could both land on the node's last free slot.
                conn.active[job.id] = job
                return conn
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self._freed.clear()
            try:
                await asyncio.wait_for(self._freed.wait(), timeout=min(left, 1.0))
            except TimeoutError:
                pass

    def _release(self, conn: NodeConn, job: LiveJob) -> None:
        if conn.active.pop(job.id, None) is not None:
            self._freed.set()

    async def _drive(self, job: LiveJob) -> None:
        s = self.settings
        deadline = time.monotonic() + s.queue_timeout_s
        tried: set[str] = set()
        attempts = 0
        last_error = "no node could serve the job"
        try:
            while True:
                try:
                    conn = await self._acquire_or_cancel(job, tried, deadline)
                except NoNode:
                    code = "no_capacity" if attempts else "model_not_found"
                    await self._end(job, "failed", ("queued",), error={"message": last_error if attempts else f"no online node serves {job.model}", "code": code})
                    return
                except TimeoutError:
                    await self._end(job, "failed", ("queued",), error={"message": "every node serving this model stayed busy", "code": "over_capacity"})
                    return
                if conn is None:  # cancelled while waiting
                    await self._end(job, "cancelled", ("queued",), error={"message": "cancelled before it started", "code": "cancelled"})
                    return
                attempts += 1
                # This task is the job's only owner, so the claim is decided here; the
                # conditional UPDATE behind it keeps the row from ever moving backwards.
                self.store.queue_transition(job.id, ("queued",), "assigned", node_id=conn.id, attempts=attempts)
                job.status, job.node_id, job.attempts = "assigned", conn.id, attempts
                job.placed.set()
                job.terms = await self.billing.terms(job, conn.hello) if self.billing is not None else None
                await conn.send(Job(job_id=job.id, kind=job.kind, body=job.body, receipt=job.terms))
                outcome = await self._attend(job, conn)
                self._release(conn, job)
                if outcome is None:
                    return
                # A retryable failure before the first token: try again, invisibly; a node
                # that was merely full stays eligible, one that failed does not.
                last_error, busy = outcome
                if not busy:
                    tried.add(conn.id)
                if attempts >= s.max_attempts or time.monotonic() >= deadline:
                    await self._end(job, "failed", ("assigned", "running"), error={"message": f"failed after {attempts} attempts: {last_error}", "code": "node_failed"})
                    return
                self.store.queue_transition(job.id, ("assigned", "running"), "queued", node_id=None)
                job.status, job.node_id = "queued", None
        except Exception as exc:  # never leave a job hanging on a bug
            log.exception("job %s crashed", job.id)
            await self._end(job, "failed", ("queued", "assigned", "running"), error={"message": f"internal error: {exc}", "code": "internal_error"})

    async def _acquire_or_cancel(self, job: LiveJob, tried: set[str], deadline: float) -> NodeConn | None:
        """A node for the job, or None when the client cancels while it waits."""
        acquire = asyncio.ensure_future(self._acquire(job, tried, deadline))
        while True:
            waiter = asyncio.ensure_future(job.inbox.get())
            done, _ = await asyncio.wait({acquire, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if waiter in done:
                if waiter.result()[0] == "cancel":
                    acquire.cancel()
                    return None
                if acquire not in done:
                    continue  # a stale frame from an earlier attempt
            else:
                waiter.cancel()
            return acquire.result()

    async def _attend(self, job: LiveJob, conn: NodeConn) -> tuple[str, bool] | None:
        """Follow one attempt. Returns (error, node was only busy) when the job should be retried."""
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
                    return fail.message, fail.code == "over_capacity"
                await self._end(job, "failed", ("assigned", "running"), error={"message": fail.message, "code": fail.code})
                return None
            elif kind == "lost":
                if cancel_deadline is not None:
                    await self._end(job, "cancelled", ("assigned", "running"), error={"message": "cancelled", "code": "cancelled"})
                    return None
                if not job.delivered:
                    return str(value), False
                await self._end(job, "failed", ("assigned", "running"), error={"message": f"the node serving this job went away mid-stream ({value})", "code": "node_lost"})
                return None
            elif kind == "cancel" and cancel_deadline is None:
                cancel_deadline = time.monotonic() + self.settings.cancel_grace_s
                await conn.send(Cancel(job_id=job.id))

    async def _end(self, job: LiveJob, status: str, allowed: tuple[str, ...], error: dict[str, Any] | None = None) -> None:
        if status == "completed":
            job.finish(status)
        else:
            job.finish(status, error=error)
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
            if self.billing is not None:  # queued right behind the finish: one commit for both
                await self.billing.settle(job, status)
            await finished
        finally:
            self.jobs.pop(job.id, None)
            job.ended.set()

    # -- node connections -----------------------------------------------------------------

    async def serve_node(self, ws: WebSocket) -> None:
        target = ws.url.path + (f"?{ws.url.query}" if ws.url.query else "")
        try:
            signed = auth.check_request(ws.headers.get(auth.AUTH_HEADER), "GET", target)
            if not await self.store.use_nonce(signed.nonce, signed.pubkey):
                raise auth.AuthError("replayed nonce")
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
            self._freed.set()
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
            conn.tokens_per_s = frame.tokens_per_s
            if frame.models is not None:
                conn.models = frozenset(m.name for m in frame.models)
                conn.hello = msgspec.structs.replace(conn.hello, models=frame.models)
                self._freed.set()
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
        for job in list(conn.active.values()):
            job.inbox.put_nowait(("lost", reason))
        conn.active.clear()
        self._freed.set()

    async def reap(self) -> None:
        """Drop nodes that stopped heartbeating; their jobs go back to the queue."""
        limit = self.settings.heartbeat_s * self.settings.missed_heartbeats
        while True:
            await asyncio.sleep(min(1.0, self.settings.heartbeat_s / 2))
            now = time.monotonic()
            for conn in list(self.nodes.values()):
                if now - conn.last_seen > limit:
                    log.warning("node %s missed %d heartbeats; dropping it", conn.id[:12], self.settings.missed_heartbeats)
                    self._drop(conn, "node stopped heartbeating")
                    self._spawn(self._close(conn))

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

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
