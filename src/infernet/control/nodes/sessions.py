"""Node sessions: the sockets of the nodes connected to this replica.

Owns the WebSocket transport and its auth (a signed upgrade, then every frame signed in
its session), heartbeats and the reaper, and the slot authority for these nodes: a slot is
taken by a `Reserve` on the bus and given back by a `Release`, so `NodeConn.active` holds
the ids of the jobs a node runs, and nothing else decides it. Frames for a job go to the bus
(`JobFrame`), and the fleet hears of every change (`NodeSeen`, `NodeLoad`, `NodeGone`): a
node that goes away takes its jobs with it, and their drivers learn it from `NodeGone`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from infernet import logs
from infernet.control.bus import (
    HEARTBEAT_LOST,
    Bus,
    Cancel,
    Dispatch,
    JobFrame,
    NodeGone,
    NodeInfo,
    NodeLoad,
    NodeSeen,
    Release,
    Reserve,
    ToNode,
)
from infernet.control.nodes.auth import check_signed
from infernet.control.nodes.claims import rated_tier
from infernet.control.nodes.registry import Registry
from infernet.control.store import Store
from infernet.protocol import auth
from infernet.protocol.messages import (
    Accept,
    Assembler,
    Done,
    Fail,
    FrameTooBig,
    Heartbeat,
    Hello,
    Part,
    Tokens,
    Welcome,
    encode,
    node_decoder,
    pieces,
)
from infernet.protocol.messages import Cancel as CancelFrame

log = logging.getLogger("infernet.control")

CONNECT_PATH = "/api/v1/nodes/connect"
HELLO_TIMEOUT_S = 10.0  # an authenticated socket that says nothing is closed


class NodeConn:
    def __init__(self, ws: WebSocket, hello: Hello, session: bytes, replica: str = "") -> None:
        self.ws = ws
        self.replica = replica
        self.id = hello.pubkey
        self.hello = hello
        self.session = session
        self.capacity = max(1, hello.capacity)
        self.tier = rated_tier(hello.tier, hello.hardware)  # its claim, checked against its hardware
        self.active: set[str] = set()  # ids of the jobs this node holds a slot for
        self.last_seen = time.monotonic()
        self.connected_at = time.time()  # wall clock: the dashboard shows uptime since then
        self.tokens_per_s = 0.0  # as the node reports it; routing uses what we measure
        self.heartbeats = 0
        self.closed = False

    def seen_at(self) -> float:
        """When the last frame came, on the wall clock (`last_seen` is monotonic)."""
        return time.time() - (time.monotonic() - self.last_seen)

    @property
    def models(self) -> frozenset[str]:
        return frozenset(m.name for m in self.hello.models)

    def info(self) -> NodeInfo:
        h = self.hello
        return NodeInfo(
            node_id=self.id, models=tuple(h.models), tier=self.tier, capacity=self.capacity, active=len(self.active),
            price=h.price, name=h.name, backend=h.backend, session=self.session.hex(), replica=self.replica,
        )

    async def send(self, frame: msgspec.Struct) -> bool:
        try:
            for piece in pieces(frame):
                await self.ws.send_bytes(piece)
            return True
        except Exception:  # the reader notices the dead socket and reclaims the jobs
            log.debug("send to node %s failed", self.id[:12])
            return False


class _FrameReader:
    """One node's frames: each message authenticated in its session, parts put together.

    A forged, replayed or oversized frame ends the session. A text message, or a signed frame
    of a type this control plane does not know (a newer node), is logged and skipped: it
    says nothing against the node's other jobs."""

    def __init__(self, ws: WebSocket, verifier: auth.FrameVerifier, node_id: str) -> None:
        self.ws = ws
        self.verifier = verifier
        self.node_id = node_id
        self.parts = Assembler()
        self.skipped = 0

    async def next(self, *, signed: bool = False) -> Any:
        """The next frame; `signed`: the hello, which carries the node's signature."""
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            raw = message.get("bytes")
            if raw is None:
                self._skip("a text message (node frames are binary)")
                continue
            data = self.verifier.open_signed(raw) if signed else self.verifier.open(raw)
            try:
                frame = node_decoder.decode(data)
                if isinstance(frame, Part):
                    whole = self.parts.feed(frame)
                    if whole is None:
                        continue
                    frame = node_decoder.decode(whole)
                    if isinstance(frame, Part):
                        raise msgspec.ValidationError("a part inside a part")
            except (msgspec.DecodeError, ValueError, RecursionError) as exc:
                # RecursionError: msgspec's guard against deep nesting. It is a RuntimeError,
                # which `serve` takes for a closed socket: uncaught here, one signed frame
                # nested 1,000 deep would silently drop the node and every job it runs.
                if isinstance(exc, FrameTooBig):
                    raise
                self._skip(f"a frame it could not read ({exc})")
                continue
            return frame

    def _skip(self, what: str) -> None:
        self.skipped += 1
        if self.skipped <= 3 or self.skipped % 1000 == 0:
            log.warning("node %s sent %s; skipped (%d so far)", self.node_id[:12], what, self.skipped)


class NodeSessions:
    def __init__(self, store: Store, bus: Bus, *, heartbeat_s: float = 10.0, missed_heartbeats: int = 3) -> None:
        self.store = store
        self.bus = bus
        self.heartbeat_s = heartbeat_s
        self.missed_heartbeats = missed_heartbeats
        self.nodes: dict[str, NodeConn] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.registry = Registry(store)  # the nodes table, written behind the sessions
        self.draining = False  # see `drain`
        self._reaped_at = time.monotonic()
        bus.serve(self)
        bus.watch(self._on_fleet)

    # -- the slot authority and the outbound frames ---------------------------------------

    async def handle(self, msg: ToNode) -> bool:
        conn = self.nodes.get(msg.node_id)
        if conn is None or conn.closed:
            return False
        match msg:
            case Reserve(job_id=job_id):
                if len(conn.active) >= conn.capacity or self.draining:
                    return False
                conn.active.add(job_id)
            case Release(job_id=job_id):
                if job_id not in conn.active:
                    return False
                conn.active.discard(job_id)
                if self.draining and not conn.active:
                    self._send_away(conn)
            case Dispatch(job=job):
                return job.job_id in conn.active and await conn.send(job)
            case Cancel(job_id=job_id):
                return job_id in conn.active and await conn.send(CancelFrame(job_id=job_id))
        self.bus.announce(NodeLoad(conn.id, conn.session.hex(), len(conn.active)))
        return True

    # -- one node's socket ----------------------------------------------------------------

    async def serve(self, ws: WebSocket) -> None:
        if self.draining:  # going away: the node tries its next control-plane URL
            await ws.close(code=1013, reason="this replica is draining")
            return
        try:
            signed = await check_signed(self.store.nonces, ws.headers.get(auth.AUTH_HEADER), "GET", ws.url)
        except auth.AuthError as exc:
            log.warning("node connection refused: %s", exc)
            await ws.close(code=4401, reason=str(exc)[:120])
            return
        logs.node_id.set(signed.pubkey)  # this socket's task: its log lines name the node
        await ws.accept()
        session = os.urandom(16)
        secret, public = auth.ephemeral()
        await ws.send_text(encode(Welcome(session=session.hex(), ephemeral=public, node_id=signed.pubkey, heartbeat_s=self.heartbeat_s)).decode())
        reader = _FrameReader(ws, auth.FrameVerifier(signed.pubkey, session, secret), signed.pubkey)
        conn: NodeConn | None = None
        try:
            first = await asyncio.wait_for(reader.next(signed=True), HELLO_TIMEOUT_S)
            if not isinstance(first, Hello) or first.pubkey != signed.pubkey:
                raise auth.AuthError("the first frame must be a hello for the signing key")
            conn = NodeConn(ws, first, session, self.bus.replica)
            old = self.nodes.get(conn.id)
            if old is not None:
                self._drop(old, "node reconnected")
            self.nodes[conn.id] = conn
            self.bus.announce(NodeSeen(conn.info()))
            self._register(conn)
            log.info("node %s online: %s on %s, tier %s", conn.id[:12], sorted(m.name for m in first.models), first.backend, conn.tier)
            if conn.tier != first.tier:
                log.warning("node %s claims tier %s but its hardware report reaches only %s", conn.id[:12], first.tier, conn.tier)
            while True:
                frame = await reader.next()
                conn.last_seen = time.monotonic()
                self._on_frame(conn, frame)
        except (WebSocketDisconnect, RuntimeError):
            pass
        except TimeoutError:
            log.warning("node %s sent no hello within %g s; closing", signed.pubkey[:12], HELLO_TIMEOUT_S)
            with contextlib.suppress(RuntimeError):
                await ws.close(code=4408, reason="no hello")
        except (auth.AuthError, FrameTooBig) as exc:
            log.warning("closing node %s: %s", signed.pubkey[:12], exc)
            try:
                await ws.close(code=4400, reason=str(exc)[:120])
            except RuntimeError:
                pass
        finally:
            if conn is not None and self.nodes.get(conn.id) is conn:
                self._drop(conn, "node disconnected")
                self.registry.offline(conn.id)

    def _register(self, conn: NodeConn) -> None:
        h = conn.hello
        self.registry.online({
            "id": conn.id, "name": h.name, "backend": h.backend, "tier": conn.tier, "models": [msgspec.to_builtins(m) for m in h.models],
            "capacity": conn.capacity, "hardware": h.hardware,
        })

    def _on_frame(self, conn: NodeConn, frame: Any) -> None:
        if isinstance(frame, (Tokens, Accept, Done, Fail)):
            # A frame for a job this node no longer holds is a duplicate, or a late one.
            if frame.job_id in conn.active:
                self.bus.publish(JobFrame(frame.job_id, conn.id, frame))
        elif isinstance(frame, Heartbeat):
            conn.heartbeats += 1
            conn.tokens_per_s = frame.tokens_per_s
            changed = False
            if frame.models is not None:  # a pull, a removal or an engine restart on the node
                conn.hello = msgspec.structs.replace(conn.hello, models=frame.models)
                changed = True
                self._register(conn)
            if frame.capacity is not None and max(1, frame.capacity) != conn.capacity:
                # A learned limit moves often: live state for the fleet, not a row to rewrite.
                conn.capacity = max(1, frame.capacity)
                changed = True
            if changed:
                self.bus.announce(NodeSeen(conn.info()))

    def _drop(self, conn: NodeConn, reason: str) -> None:
        if conn.closed:
            return
        conn.closed = True
        if self.nodes.get(conn.id) is conn:
            del self.nodes[conn.id]
        jobs, conn.active = conn.active, set()
        self.bus.announce(NodeGone(conn.id, conn.session.hex(), reason, busy=bool(jobs)))

    def _on_fleet(self, msg: Any) -> None:
        """A node of ours that said hello to another replica has left us, whatever our socket
        still thinks: across a partition no close reaches us, and the reaper would count it
        online here for `missed_heartbeats` intervals more. Let it go now; its row is the
        other replica's to write, so it is not marked offline."""
        if not isinstance(msg, NodeSeen) or msg.info.replica == self.bus.replica:
            return
        conn = self.nodes.get(msg.info.node_id)
        if conn is not None and msg.info.session != conn.session.hex():
            log.info("node %s reconnected to replica %s; letting go of its old socket here", conn.id[:12], msg.info.replica)
            self._drop(conn, "node reconnected to another replica")
            self._spawn(_hang_up(conn, 4409, "reconnected to another replica"))

    # -- draining -------------------------------------------------------------------------

    def drain(self) -> None:
        """This replica is going away: no new slot on its nodes (other replicas place
        elsewhere), no new node, and each node is sent away (close 1012, "service restart":
        the daemon connects to its next URL at once) as soon as it holds no job; idle ones now."""
        self.draining = True
        for conn in list(self.nodes.values()):
            if not conn.active:
                self._send_away(conn)

    def send_all_away(self) -> None:
        """The drain's deadline: the nodes still busy go too (their jobs follow the fault rules)."""
        for conn in list(self.nodes.values()):
            self._send_away(conn)

    def _send_away(self, conn: NodeConn) -> None:
        self._drop(conn, "its control plane replica is draining")
        self._spawn(_hang_up(conn, 1012, "this replica is draining"))

    # -- the reaper -----------------------------------------------------------------------

    def reap(self) -> None:
        """Drop nodes that stopped heartbeating; their jobs follow the fault rules. Called
        every second or so: a longer gap means this replica stalled (its loop, or the
        maintenance round waiting on the database), and the nodes' frames may have waited
        unread in their sockets; the stall is not counted against them
        (a replica stalled by a burst of 1,000 streams on 2 cores dropped 3,480 healthy nodes
        at once, bench/fleet.py)."""
        limit = self.heartbeat_s * self.missed_heartbeats
        now = time.monotonic()
        stalled, self._reaped_at = now - self._reaped_at, now
        if stalled > self.heartbeat_s:
            log.warning("the reaper ran %.1f s late (this replica's loop, or its maintenance waiting on the database, was stalled); its nodes are given that long again", stalled)
            for conn in self.nodes.values():
                conn.last_seen = min(now, conn.last_seen + stalled)
            return
        silent = [c for c in self.nodes.values() if now - c.last_seen > limit]
        if silent:
            log.warning("%d nodes missed %d heartbeats; dropping them: %s", len(silent), self.missed_heartbeats, ", ".join(c.id[:12] for c in silent[:5]))
        for conn in silent:
            self._drop(conn, HEARTBEAT_LOST)
            self._spawn(self._close(conn))

    async def _close(self, conn: NodeConn) -> None:
        await _hang_up(conn, 4408, "heartbeat timeout")
        self.registry.offline(conn.id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        await self.registry.aclose()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _hang_up(conn: NodeConn, code: int, reason: str) -> None:
    """Close a node's socket we already let go of; a socket that is gone already is fine."""
    with contextlib.suppress(Exception):
        await conn.ws.close(code=code, reason=reason)
