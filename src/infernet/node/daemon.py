"""The node daemon: one outbound WebSocket to the control plane, jobs pushed down it.

Tokens go up coalesced: a batch is sent as soon as the socket is free, and whatever the
engine produced meanwhile rides in the next frame. No timer, so an idle node adds no delay
and a busy one sends fewer, larger frames.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec
import websockets

from infernet import __version__, logs
from infernet.backends.base import Backend, BackendError
from infernet.node.capacity import AdaptiveLimit
from infernet.protocol import auth, keys, receipts
from infernet.protocol.messages import (
    Accept,
    Assembler,
    Cancel,
    Done,
    Fail,
    Heartbeat,
    Hello,
    Job,
    ModelAd,
    Part,
    Tokens,
    Usage,
    Welcome,
    call_text,
    control_decoder,
    encode,
    joined,
    pieces,
)

log = logging.getLogger("infernet.node")
CONNECT_PATH = "/api/v1/nodes/connect"
PING_S = 5.0
# How long a close waits for the control plane's answer. websockets waits this long after a
# missed pong too (its default, 10 s, doubled the time a cut-off replica took to notice), so
# a node on a dead link moves on after PING_S + PING_S + CLOSE_S.
CLOSE_S = 1.0


def ws_url(control_url: str) -> str:
    parts = urlsplit(control_url.rstrip("/"))
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path + CONNECT_PATH, "", ""))


@dataclass
class NodeStatus:
    connected: bool = False
    node_id: str = ""
    jobs_done: int = 0
    jobs_failed: int = 0
    tokens_out: int = 0
    active: int = 0
    last_error: str = ""
    connected_at: float = 0.0
    models: list[str] = field(default_factory=list)  # what the node advertises now
    capacity: int = 0
    backend_ok: bool = False  # the engine's last health check (node/status.py runs it)
    backend_detail: str = ""


@dataclass
class Node:
    control_url: str
    identity: keys.Identity
    backend: Backend
    name: str = ""
    tier: str = "cpu"
    hardware: dict[str, Any] = field(default_factory=dict)
    # Own rates, micro-USDC per million tokens ({"input": .., "output": ..}); the control
    # plane clamps them into its bounds for this node's tier. None: the tier's rates.
    price: dict[str, int] | None = None
    status: NodeStatus = field(default_factory=NodeStatus)
    # Sees every frame sent except token frames (node/metrics.py): per job, never per token.
    observe: Callable[[msgspec.Struct], None] | None = None

    def __post_init__(self) -> None:
        self._ws: Any = None
        self._signer: auth.FrameSigner | None = None
        # Frames in send order; a job's tokens sit at their place as its id, and wait in
        # `_tokens` until the writer gets there: every token that came meanwhile goes as one
        # frame, however many jobs interleave.
        self._outbox: collections.deque[msgspec.Struct | str] = collections.deque()
        self._tokens: dict[str, list[Tokens]] = {}
        self._wake = asyncio.Event()
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._cancelled: set[str] = set()
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._capacity = 1
        self._limit: AdaptiveLimit | None = None
        self._tps = 0.0
        self._url_at = 0

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def control_urls(self) -> list[str]:
        """`control_url` may name several replicas of one network, comma-separated."""
        return [u.strip() for u in self.control_url.split(",") if u.strip()]

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Stay connected until `stop` is set. A lost link goes at once to the next control
        plane URL (another replica of the network); only a whole round of them failing backs
        off, jittered."""
        stop = stop or asyncio.Event()
        delay = 0.25
        failed_in_a_row = 0
        while not stop.is_set():
            started = time.monotonic()
            session = asyncio.ensure_future(self._session())
            stopper = asyncio.ensure_future(stop.wait())
            try:
                done, _ = await asyncio.wait({session, stopper}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                session.cancel()
                stopper.cancel()
                await asyncio.gather(session, return_exceptions=True)
                raise
            if stopper in done:
                session.cancel()
                await asyncio.gather(session, return_exceptions=True)
                break
            stopper.cancel()
            exc = session.exception()
            self.status.connected = False
            urls = self.control_urls
            self._url_at = (self._url_at + 1) % len(urls)
            failed_in_a_row += 1
            if time.monotonic() - started > 30:
                delay, failed_in_a_row = 0.25, 1  # a long healthy session resets the backoff
            if exc is not None:
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("control plane connection lost (%s); trying %s", self.status.last_error, urls[self._url_at])
            if failed_in_a_row >= len(urls):  # every replica was tried: wait before the next round
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 15.0)
                failed_in_a_row = 0
        for task in list(self._jobs.values()):
            task.cancel()
        await asyncio.gather(*self._jobs.values(), return_exceptions=True)

    async def _advertised(self) -> tuple[list[ModelAd], int]:
        """What to advertise now. An engine that is down or restarting advertises no models,
        so the router sends nothing here until it is back; the node itself stays connected."""
        try:
            models = await self.backend.models()
            said = await self.backend.capacity()
        except BackendError as exc:
            if exc.message != self.status.last_error:
                log.warning("engine unavailable, advertising no models: %s", exc.message)
            self.status.last_error = exc.message
            self.status.models = []
            return [], self._capacity
        if said is None:  # the engine does not say: learn it from its latency
            self._limit = self._limit or AdaptiveLimit()
            capacity = self._limit.limit
        else:
            self._limit, capacity = None, max(1, said)
        self.status.models, self.status.capacity = [m.name for m in models], capacity
        return models, capacity

    async def _session(self) -> None:
        models, self._capacity = await self._advertised()
        header = auth.sign_request(self.identity, "GET", CONNECT_PATH)
        url = self.control_urls[self._url_at % len(self.control_urls)]
        # Pings every few seconds: a replica cut off by the network (no close, no reset) is
        # noticed in seconds, and the node moves to another.
        async with websockets.connect(
            ws_url(url), additional_headers={auth.AUTH_HEADER: header}, max_size=2**24, open_timeout=10, compression=None,
            ping_interval=PING_S, ping_timeout=PING_S, close_timeout=CLOSE_S,
        ) as ws:
            welcome = control_decoder.decode(await ws.recv())
            if not isinstance(welcome, Welcome):
                raise ConnectionError("the control plane did not welcome this node")
            self._ws = ws
            self._signer = auth.FrameSigner(self.identity, bytes.fromhex(welcome.session), welcome.ephemeral)
            self._outbox.clear()
            self._tokens.clear()
            await ws.send(self._signer.seal_signed(encode(Hello(
                pubkey=self.identity.pubkey, backend=self.backend.name, models=models, capacity=self._capacity,
                tier=self.tier, hardware=self.hardware, name=self.name, version=__version__, price=self.price,
            ))))
            self.status.connected = True
            self.status.node_id = self.identity.pubkey
            self.status.connected_at = time.time()
            log.info("connected to %s as %s", url, self.identity.npub)
            tasks = [asyncio.ensure_future(t) for t in (self._reader(ws), self._writer(ws), self._heartbeat(welcome.heartbeat_s, models))]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    t.result()
            finally:
                for t in tasks:
                    t.cancel()
                self._ws = None
                # Jobs in flight die with the connection: the control plane reassigns them.
                for task in list(self._jobs.values()):
                    task.cancel()

    # -- frames ---------------------------------------------------------------------------

    def _send(self, frame: msgspec.Struct) -> None:
        if type(frame) is Tokens:
            waiting = self._tokens.get(frame.job_id)
            if waiting is not None:
                waiting.append(frame)
                return
            self._tokens[frame.job_id] = [frame]
            self._outbox.append(frame.job_id)
        else:
            if self.observe is not None:
                self.observe(frame)
            self._outbox.append(frame)
        self._wake.set()

    async def _writer(self, ws: Any) -> None:
        assert self._signer is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                item = self._outbox.popleft()
                frame = joined(self._tokens.pop(item)) if type(item) is str else item
                for piece in pieces(frame):  # a big result goes as parts, each signed
                    await ws.send(self._signer.seal(piece))

    async def _heartbeat(self, interval: float, advertised: list[ModelAd]) -> None:
        """Every beat re-reads the engine: a pull, a removal or an engine restart reaches
        the control plane within one interval (models and capacity ride only when changed)."""
        last_models, last_capacity = advertised, self._capacity
        while True:
            await asyncio.sleep(interval)
            models, capacity = await self._advertised()
            self._capacity = capacity
            self._send(Heartbeat(
                active=len(self._jobs),
                models=models if models != last_models else None,
                tokens_per_s=round(self._tps, 2),
                capacity=capacity if capacity != last_capacity else None,
            ))
            last_models, last_capacity = models, capacity

    async def _reader(self, ws: Any) -> None:
        parts = Assembler()
        async for raw in ws:
            try:
                frame = control_decoder.decode(raw)
                if isinstance(frame, Part):
                    whole = parts.feed(frame)
                    if whole is None:
                        continue
                    frame = control_decoder.decode(whole)
            except (msgspec.DecodeError, ValueError) as exc:  # a newer control plane's frame
                log.warning("skipping a control-plane frame this node cannot read: %s", exc)
                continue
            if isinstance(frame, Job):
                self._on_job(frame)
            elif isinstance(frame, Cancel):
                task = self._jobs.get(frame.job_id)
                if task is not None:
                    self._cancelled.add(frame.job_id)
                    task.cancel()

    def _on_job(self, job: Job) -> None:
        if job.job_id in self._seen or job.job_id in self._jobs:
            log.info("ignoring a duplicate delivery of %s", job.job_id)
            return
        self._seen[job.job_id] = None
        while len(self._seen) > 4096:
            self._seen.popitem(last=False)
        if len(self._jobs) >= self._capacity:
            self._send(Fail(job_id=job.job_id, message="node at capacity", code="over_capacity", retryable=True))
            return
        with logs.bind(job=job.job_id):  # the task copies the context: its lines carry the id
            task = asyncio.ensure_future(self._run_job(job))
        self._jobs[job.job_id] = task
        self.status.active = len(self._jobs)
        task.add_done_callback(lambda _t, jid=job.job_id: self._job_done(jid))

    def _job_done(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)
        self._cancelled.discard(job_id)
        self.status.active = len(self._jobs)

    # -- running a job --------------------------------------------------------------------

    def _done(self, job: Job, usage: Usage, finish: str, result: dict[str, Any] | None = None, engine_s: float | None = None) -> Done:
        """The job's last frame; with receipt terms, the receipt for what was served, signed."""
        engine_ms = round(engine_s * 1000, 3) if engine_s is not None else None
        terms = job.receipt
        if not terms or terms.get("node_pubkey") != self.identity.pubkey or terms.get("job_id") != job.job_id or terms.get("type") != receipts.RECEIPT_TYPE:
            return Done(job_id=job.job_id, usage=usage, finish_reason=finish, result=result, engine_ms=engine_ms)
        try:
            body = receipts.complete(terms, usage.prompt_tokens, usage.completion_tokens, int(time.time()))
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("job %s: unusable receipt terms (%s); not signing", job.job_id, exc)
            return Done(job_id=job.job_id, usage=usage, finish_reason=finish, result=result, engine_ms=engine_ms)
        return Done(job_id=job.job_id, usage=usage, finish_reason=finish, result=result, receipt=body, signature=receipts.sign(self.identity, body), engine_ms=engine_ms)

    async def _run_job(self, job: Job) -> None:
        self._send(Accept(job_id=job.job_id))
        sent: list[str] = []
        usage: Usage | None = None
        started = time.monotonic()
        first_at = 0.0
        running = len(self._jobs)
        try:
            if job.kind == "embedding":
                result = await self.backend.embed(job.body)
                u = result.get("usage") or {}
                usage = Usage(int(u.get("prompt_tokens", 0)), 0)
                self._send(self._done(job, usage, "stop", result, time.monotonic() - started))
                self.status.jobs_done += 1
                return
            stream = self.backend.chat(job.body) if job.kind == "chat" else self.backend.complete(job.body)
            finish = None
            last_at = started
            try:
                async for chunk in stream:
                    last_at = time.monotonic()
                    # The first frame says how long the engine took to it: the control plane
                    # tells clients what infernet added on top (`infernet-overhead-ms`).
                    engine_ms = None if sent else round((last_at - started) * 1000, 3)
                    if not first_at:
                        first_at = last_at
                    if chunk.tool_calls or chunk.logprobs:
                        sent.append(chunk.text + call_text(chunk.tool_calls))
                        self._send(Tokens(job_id=job.job_id, text=chunk.text, tool_calls=chunk.tool_calls, logprobs=chunk.logprobs, engine_ms=engine_ms))
                    elif chunk.text:
                        sent.append(chunk.text)
                        self._send(Tokens(job_id=job.job_id, text=chunk.text, engine_ms=engine_ms))
                    if chunk.usage is not None:
                        usage = chunk.usage
                    if chunk.finish_reason is not None:
                        finish = chunk.finish_reason
            finally:
                await stream.aclose()
            if usage is None or finish is None:
                raise BackendError("the engine ended the stream without usage or a finish reason")
            self._send(self._done(job, usage, finish, engine_s=last_at - started))
            self.status.jobs_done += 1
            self.status.tokens_out += usage.completion_tokens
            if self._limit is not None and first_at:
                self._learned(self._limit.sample(first_at - started, running))
            elapsed = time.monotonic() - started
            if elapsed > 0 and usage.completion_tokens:
                rate = usage.completion_tokens / elapsed
                self._tps = rate if not self._tps else 0.8 * self._tps + 0.2 * rate
        except asyncio.CancelledError:
            if job.job_id in self._cancelled and self._ws is not None:
                # The engine's running usage, else the text it produced counted (never chunks).
                delivered = usage or await self._count(sent)
                self._send(self._done(job, delivered, "cancelled"))
            raise
        except BackendError as exc:
            self.status.jobs_failed += 1
            self.status.last_error = exc.message
            if self._limit is not None and exc.code == "over_capacity":
                self._learned(self._limit.overloaded())
            if usage is None and sent:
                usage = await self._count(sent)
            self._send(Fail(job_id=job.job_id, message=exc.message, code=exc.code, retryable=exc.retryable and not sent, usage=usage))
        except Exception as exc:  # an engine bug fails this job, never the node
            log.exception("job %s failed", job.job_id)
            self.status.jobs_failed += 1
            if usage is None and sent:
                usage = await self._count(sent)
            self._send(Fail(job_id=job.job_id, message=f"node error: {type(exc).__name__}: {exc}", retryable=not sent, usage=usage))

    def _learned(self, capacity: int) -> None:
        """A learned capacity that moved goes up at once (a small frame, and the limit moves
        by whole slots), so the control plane hands out as many slots as the engine takes now."""
        if capacity != self._capacity:
            self._capacity = self.status.capacity = capacity
            self._send(Heartbeat(active=len(self._jobs), tokens_per_s=round(self._tps, 2), capacity=capacity))

    async def _count(self, sent: list[str]) -> Usage:
        """Usage for text an engine produced without reporting usage: its tokenizer's count
        when the backend has one, else the UTF-8 bytes (an upper bound, which the control plane
        meters down from the text it relayed)."""
        text = "".join(sent)
        counted = await self.backend.count_tokens(text)
        return Usage(0, counted if counted is not None else len(text.encode()))
