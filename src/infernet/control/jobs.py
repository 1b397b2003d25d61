"""A job while it lives on this replica: its event log, its followers, its inbox."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

Event = tuple[int, str, dict[str, Any]]  # (seq, type, data); type: token | done | error


class LiveJob:
    def __init__(self, job_id: str, key_id: str, kind: str, model: str, body: dict[str, Any]) -> None:
        self.id = job_id
        self.key_id = key_id
        self.kind = kind
        self.model = model
        self.body = body
        self.created = time.time()
        self.status = "queued"
        self.node_id: str | None = None
        self.attempts = 0
        self.events: list[Event] = []
        self.text: list[str] = []
        self.delivered = False  # a token reached the event log: no more silent retries
        self.sealed = False  # the job is ending: no more text
        self.purpose = "client"  # "client", or "canary"/"shadow" for the control plane's own checks
        self.sent_at = 0.0  # monotonic: the job frame went to the node
        self.first_at = 0.0  # monotonic: the first token arrived
        self.result: dict[str, Any] | None = None
        self.usage: dict[str, int] | None = None
        self.finish_reason: str | None = None
        self.error: dict[str, Any] | None = None
        self.terms: dict[str, Any] | None = None  # the receipt fields sent to the serving node
        self.signed: tuple[dict[str, Any], str] | None = None  # the node's receipt and signature
        self.inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.finished = asyncio.Event()
        self.placed = asyncio.Event()  # assigned to a node, or finished without one
        self.ended = asyncio.Event()  # finished, stored and settled: the store tells it all
        self._changed: asyncio.Future[None] | None = None

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
            if not self.delivered:
                self.delivered = True
                self.first_at = time.monotonic()
            self.text.append(text)
            self._append("token", {"text": text})

    def seal(self, status: str, *, error: dict[str, Any] | None = None) -> list[Event]:
        """Stop taking text and return the whole event log with the final event, which is not
        published yet: the caller persists it first, so that a follower who sees the end can
        already read the final state back."""
        if self.sealed:
            return list(self.events) if self.finished.is_set() else [*self.events, (len(self.events) + 1, *self._last)]
        self.sealed = True
        self.status = status
        if status == "completed":
            last = ("done", {"finish_reason": self.finish_reason, "usage": self.usage, "result": self.result})
        else:
            self.error = error or {"message": f"job {status}", "code": status}
            last = ("error", {**self.error, "status": status, "usage": self.usage})
        self._last = last
        return [*self.events, (len(self.events) + 1, *last)]

    def publish(self) -> None:
        """Publish the final event from `seal` and wake everyone waiting on the job."""
        if self.finished.is_set():
            return
        self._append(*self._last)
        self.finished.set()
        self.placed.set()

    def finish(self, status: str, *, error: dict[str, Any] | None = None) -> None:
        self.seal(status, error=error)
        self.publish()

    async def follow(self, after: int = 0) -> AsyncIterator[Event]:
        """Every event after `after`, then new ones as they come, until the job ends."""
        i = after
        while True:
            while i < len(self.events):
                yield self.events[i]
                i += 1
            if self.finished.is_set():
                return
            if self._changed is None:
                self._changed = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._changed)

    def row(self) -> dict[str, Any]:
        """The job as its database row will read once the journal has caught up."""
        usage = self.usage or {}
        return {
            "id": self.id, "key_id": self.key_id, "kind": self.kind, "model": self.model, "status": self.status,
            "node_id": self.node_id, "created_at": self.created, "finished_at": None, "attempts": self.attempts,
            "output": self.output, "finish_reason": self.finish_reason, "result": self.result,
            "prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens"),
            "error": (self.error or {}).get("message"),
        }

    @property
    def output(self) -> str:
        return "".join(self.text)

    def request_cancel(self, reason: str = "client disconnected") -> None:
        if not self.finished.is_set():
            self.inbox.put_nowait(("cancel", reason))
