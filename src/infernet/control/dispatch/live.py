"""A job while it lives on this replica: its current state, its event log and followers,
its inbox of events for the driver.

The event log is the relay's hot path: a token batch is appended and wakes the followers
(the SSE responses). No I/O and no lock there. A follower that takes a token event is about
to write it to a client: from then on the job is *delivered*, and an attempt that fails can
no longer be retried invisibly. Until then the log of a failed attempt is thrown away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from infernet.control.dispatch.jobs import CancelRequested, JobState, JobStatus
from infernet.control.dispatch.jobs import Event as JobEvent
from infernet.protocol.messages import Tokens, call_text

Event = tuple[int, str, dict[str, Any]]  # (seq, type, data); type: token | done | error


class LiveJob:
    def __init__(self, state: JobState, body: dict[str, Any]) -> None:
        self.state = state
        self.id = state.id
        self.key_id = state.key_id
        self.kind = state.kind
        self.model = state.model
        self.purpose = state.purpose
        self.body = body
        self.created = time.time()
        self.events: list[Event] = []
        self.text: list[str] = []  # per token event, the text generated: content, and tool-call text (metering counts it)
        self.calls: list[dict[str, Any]] = []  # tool calls, assembled from their deltas
        self.logprobs: list[dict[str, Any]] = []
        self.delivered = 0  # token events taken by followers (written to a client): no silent retry after one
        self.sealed = False  # the job is ending: no more text
        self.sent_at = 0.0  # monotonic: the job frame went to the node
        self.first_at = 0.0  # monotonic: the first token arrived
        self.last_frame = 0.0  # monotonic: the node's last frame for this job (stall detection)
        self.deadline = 0.0  # monotonic: when waiting for a node gives up (per attempt)
        self.metered: Any = None  # what billing made of the node's claim (money.metering.Metered)
        self.on_delivered: Callable[[], Awaitable[object]] | None = None  # awaited when a follower first takes output
        self.cancel_deadline = 0.0  # monotonic: a cancelled node's grace runs out
        # The engine's own time, as the node measured it (to its first output, and in all),
        # never more than the time since the job frame went: what infernet adds is the rest.
        self.engine_first_s: float | None = None
        self.engine_s: float | None = None
        # The node whose frames count: set when the job goes to it, cleared by its last frame.
        # Text a node sends after its own Done, or from an earlier attempt, is not the answer.
        self.listening: str | None = None
        self.inbox: asyncio.Queue[JobEvent] = asyncio.Queue()
        self.finished = asyncio.Event()
        self.placed = asyncio.Event()  # assigned to a node, or finished without one
        self.started = asyncio.Event()  # the first token is in the log, or the job finished
        self.ended = asyncio.Event()  # finished, stored and settled: the store tells it all
        self._changed: asyncio.Future[None] | None = None
        self._last: tuple[str, dict[str, Any]] | None = None

    # -- the current state, for readers ---------------------------------------------------

    @property
    def status(self) -> JobStatus:
        return self.state.status

    @property
    def node_id(self) -> str | None:
        return self.state.node_id

    @property
    def usage(self) -> dict[str, int] | None:
        """What the client is charged for: the metered usage once billing has checked the
        node's claim, else the node's own report."""
        u = self.metered or self.state.usage
        return None if u is None else {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total_tokens}

    @property
    def error(self) -> dict[str, Any] | None:
        e = self.state.error
        if e is None:
            return None
        out: dict[str, Any] = {"message": e.message, "code": e.code}
        if e.retry_after is not None:
            out["retry_after"] = e.retry_after
        return out

    @property
    def output(self) -> str:
        """Everything the model generated, as text: what metering counts."""
        return "".join(self.text)

    @property
    def content(self) -> str | None:
        """The answer's message content: None when the model called tools instead."""
        if not self.calls:
            return self.output
        text = "".join(e[2].get("text", "") for e in self.events if e[1] == "token")
        return text or None

    # -- the event log (hot path: no I/O here) --------------------------------------------

    def _append(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append((len(self.events) + 1, kind, data))
        fut = self._changed
        if fut is not None:
            self._changed = None
            if not fut.done():
                fut.set_result(None)

    def push_text(self, text: str) -> None:
        if text and not self.sealed:
            if not self.text:
                self.first_at = time.monotonic()
                self.started.set()
            self.text.append(text)
            self._append("token", {"text": text})

    def engine_time(self, ms: float | None) -> float | None:
        """A node's word for its engine's time, bounded by what was seen here."""
        if ms is None or not self.sent_at:
            return None
        return min(max(0.0, ms / 1000), time.monotonic() - self.sent_at)

    def push_tokens(self, frame: Tokens) -> None:
        if frame.engine_ms is not None and not self.text:
            self.engine_first_s = self.engine_time(frame.engine_ms)
        if frame.tool_calls is None and frame.logprobs is None:
            return self.push_text(frame.text)
        if self.sealed:
            return
        data: dict[str, Any] = {"text": frame.text}
        if frame.tool_calls:
            data["tool_calls"] = frame.tool_calls
            for d in frame.tool_calls:
                self._assemble(d)
        if frame.logprobs:
            data["logprobs"] = frame.logprobs
            self.logprobs.extend(frame.logprobs)
        if not self.text:
            self.first_at = time.monotonic()
            self.started.set()
        self.text.append(frame.text + call_text(frame.tool_calls))
        self._append("token", data)

    def _assemble(self, delta: dict[str, Any]) -> None:
        index = delta.get("index", 0)
        fn = delta.get("function") or {}
        if index >= len(self.calls):
            self.calls.append({"id": delta.get("id") or f"call_{self.id[-12:]}_{index}", "type": "function", "function": {"name": fn.get("name") or "", "arguments": ""}})
        call = self.calls[min(index, len(self.calls) - 1)]
        if fn.get("name") and not call["function"]["name"]:
            call["function"]["name"] = fn["name"]
        call["function"]["arguments"] += str(fn.get("arguments") or "")

    def discard_attempt(self) -> None:
        """Forget what a failed attempt produced; nobody has seen any of it."""
        assert not self.delivered, "a delivered attempt cannot be thrown away"
        self.events.clear()
        self.text.clear()
        self.calls.clear()
        self.logprobs.clear()
        self.first_at = 0.0
        self.engine_first_s = self.engine_s = None
        self.started.clear()

    @property
    def delivered_text(self) -> str:
        """The text followers took (their clients have it, or are being sent it)."""
        return "".join(self.text[: self.delivered]) if self.delivered < len(self.text) else self.output

    def seal(self) -> list[Event]:
        """Stop taking text and return the whole event log with the final event (from the
        terminal state), which is not published yet: the caller persists it first."""
        if self._last is None:
            self.sealed = True
            s = self.state
            if s.status is JobStatus.COMPLETED:
                self._last = ("done", {"finish_reason": s.finish_reason, "usage": self.usage, "result": s.result})
            else:
                self._last = ("error", {**(self.error or {"message": f"job {s.status}", "code": str(s.status)}), "status": str(s.status), "usage": self.usage})
        if self.finished.is_set():
            return list(self.events)
        return [*self.events, (len(self.events) + 1, *self._last)]

    def reseal(self, state: JobState) -> None:
        """End the job as `state` after all, before anyone saw its end: the store refused
        this replica's final write (another replica took the job over and ended it)."""
        assert not self.finished.is_set()
        self.state, self._last = state, None

    def publish(self) -> None:
        """Publish the final event from `seal` and wake everyone waiting on the job."""
        if self.finished.is_set():
            return
        self.seal()
        assert self._last is not None
        self._append(*self._last)
        self.finished.set()
        self.placed.set()
        self.started.set()

    async def follow(self, after: int = 0) -> AsyncIterator[Event]:
        """Every event after `after`, then new ones as they come, until the job ends."""
        async for batch in self.follow_batches(after):
            for event in batch:
                yield event

    async def follow_batches(self, after: int = 0) -> AsyncIterator[list[Event]]:
        """`follow` in batches: all the events that came while the follower was away (a slow
        client gets them in one write, not one write per token)."""
        i = after
        while True:
            if i < len(self.events):
                batch = self.events[i:]
                i += len(batch)
                last_token = next((e[0] for e in reversed(batch) if e[1] == "token"), 0)
                if last_token > self.delivered:
                    if not self.delivered and self.on_delivered is not None:
                        # Durable before any output leaves: a replica that takes the job
                        # over must not run it again (a re-run's events are cut at other
                        # places, so a re-attaching client would get words twice or not at all).
                        await self.on_delivered()
                    self.delivered = max(self.delivered, last_token)  # token events come first, numbered 1..n
                yield batch
            if self.finished.is_set() and i >= len(self.events):
                return
            if i < len(self.events):
                continue
            if self._changed is None:
                self._changed = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._changed)

    def row(self) -> dict[str, Any]:
        """The job as its database row will read once the journal has caught up."""
        usage = self.usage or {}
        s = self.state
        return {
            "id": self.id, "key_id": self.key_id, "kind": self.kind, "model": self.model, "status": str(s.status),
            "node_id": s.node_id, "created_at": self.created, "finished_at": None, "attempts": s.attempts,
            "output": self.output, "finish_reason": s.finish_reason, "result": s.result,
            "prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens"),
            "error": s.error.message if s.error else None,
        }

    def request_cancel(self, reason: str = "client disconnected") -> None:
        if not self.finished.is_set():
            self.inbox.put_nowait(CancelRequested(reason))
