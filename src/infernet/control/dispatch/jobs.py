"""A job's life as data: a frozen `JobState` and a pure `apply(state, event) -> state`.

Every fault rule is one case below. The driver (`dispatch/driver.py`) feeds events in and
performs only what `effects(old, new)` asks for: dispatch to a node, cancel it, free its
slot, put the job back in the queue, end it. Nothing here does I/O or reads a clock.

    queued --Placed--> assigned --Accepted--> running --Done--> completed
       |                  |                      |
       |                  +------ Failed(retryable) / Lost, before delivery --> queued (retry)
       |                  +------ Failed / Lost after delivery, attempts spent --> failed
       +--CancelRequested--> cancelled      CancelRequested on a node: cancelling, then
       +--Unplaceable / TimedOut--> failed  Done / Failed / Lost / TimedOut --> cancelled
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec

from infernet.protocol.messages import Usage


class JobStatus(StrEnum):
    QUEUED = "queued"
    ASSIGNED = "assigned"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def on_node(self) -> bool:
        return self in _ON_NODE


_TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
_ON_NODE = frozenset({JobStatus.ASSIGNED, JobStatus.RUNNING})
# Failures that say nothing about the node's health.
CLIENT_FAULTS = frozenset({"context_length_exceeded", "invalid_request", "cancelled", "node_lost"})
BUSY = "over_capacity"


class JobError(msgspec.Struct, frozen=True):
    code: str
    message: str
    retry_after: int | None = None  # seconds, for over_capacity


class JobState(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    key_id: str
    kind: str  # chat | completion | embedding
    model: str
    purpose: str = "client"  # client, or canary for the control plane's own checks
    max_attempts: int = 3
    status: JobStatus = JobStatus.QUEUED
    node_id: str | None = None
    attempts: int = 0
    tried: frozenset[str] = frozenset()  # nodes that failed this job: not tried again
    delivered: bool = False  # output reached the client: no more silent retries
    cancelling: bool = False  # a cancel went to the node; waiting for its final usage
    usage: Usage | None = None
    finish_reason: str | None = None
    result: dict[str, Any] | None = None
    error: JobError | None = None
    last_error: str = ""  # why the last attempt failed, for the final message
    terms: dict[str, Any] | None = None  # the receipt fields sent to the serving node
    receipt: tuple[dict[str, Any], str] | None = None  # the node's signed receipt


# -- events -----------------------------------------------------------------------------


class Placed(msgspec.Struct, frozen=True):
    """A node's slot is reserved and the claim committed."""

    node_id: str
    terms: dict[str, Any] | None = None


class ClaimRefused(msgspec.Struct, frozen=True):
    """The database gave the job to another claimer: this replica steps aside."""


class Accepted(msgspec.Struct, frozen=True):
    node_id: str


class Delivered(msgspec.Struct, frozen=True):
    """The first byte of the answer is on its way to the client."""


class Done(msgspec.Struct, frozen=True):
    node_id: str
    usage: Usage
    finish_reason: str = "stop"
    result: dict[str, Any] | None = None
    receipt: tuple[dict[str, Any], str] | None = None


class Failed(msgspec.Struct, frozen=True):
    node_id: str | None  # None: the control plane itself failed the job
    code: str
    message: str
    retryable: bool = False
    usage: Usage | None = None


class Lost(msgspec.Struct, frozen=True):
    node_id: str
    reason: str


class CancelRequested(msgspec.Struct, frozen=True):
    reason: str = "cancelled"


class TimedOut(msgspec.Struct, frozen=True):
    """The start deadline passed in the queue, or a cancelled node's grace ran out."""

    retry_after: int = 1


class Unplaceable(msgspec.Struct, frozen=True):
    """No node can take the job: none serves the model, none meets its constraints, or the
    queue is full."""

    code: str
    message: str
    retry_after: int | None = None


Event = Placed | ClaimRefused | Accepted | Delivered | Done | Failed | Lost | CancelRequested | TimedOut | Unplaceable

CANCELLED = JobError("cancelled", "cancelled")


def _end(s: JobState, status: JobStatus, error: JobError | None = None, **fields: Any) -> JobState:
    return msgspec.structs.replace(s, status=status, error=error, **fields)


def _retry(s: JobState, why: str, *, exclude: bool) -> JobState:
    """Back to the queue for another node, or failed when the attempts are spent."""
    tried = s.tried | {s.node_id} if exclude and s.node_id else s.tried
    if s.attempts >= s.max_attempts:
        return _end(s, JobStatus.FAILED, JobError("node_failed", f"failed after {s.attempts} attempts: {why}"), tried=tried, last_error=why)
    return msgspec.structs.replace(s, status=JobStatus.QUEUED, node_id=None, terms=None, usage=None, tried=tried, last_error=why)


def apply(s: JobState, e: Event) -> JobState:
    if s.status.terminal:
        return s  # late frames and repeated cancels change nothing
    # A frame from a node that no longer holds the job (an earlier attempt) is stale.
    if isinstance(e, (Accepted, Done, Lost)) and e.node_id != s.node_id:
        return s
    if isinstance(e, Failed) and e.node_id is not None and e.node_id != s.node_id:
        return s
    match e:
        case Placed(node_id=node, terms=terms) if s.status is JobStatus.QUEUED:
            return msgspec.structs.replace(s, status=JobStatus.ASSIGNED, node_id=node, attempts=s.attempts + 1, terms=terms)
        case ClaimRefused() if s.status is JobStatus.QUEUED:
            return _end(s, JobStatus.FAILED, JobError("claimed_elsewhere", "the job was claimed elsewhere"))
        case Accepted() if s.status is JobStatus.ASSIGNED:
            return msgspec.structs.replace(s, status=JobStatus.RUNNING)
        case Delivered() if not s.delivered:
            return msgspec.structs.replace(s, delivered=True)
        case Done(usage=usage, finish_reason=finish, result=result, receipt=receipt) if s.status.on_node:
            fields = {"usage": usage, "finish_reason": finish, "result": result, "receipt": receipt}
            if s.cancelling or finish == "cancelled":
                return _end(s, JobStatus.CANCELLED, CANCELLED, **fields)
            return _end(s, JobStatus.COMPLETED, **fields)
        case Failed(usage=usage) if s.cancelling:
            return _end(s, JobStatus.CANCELLED, CANCELLED, usage=usage or s.usage)
        case Failed(code=code, message=message, retryable=True) if s.status.on_node and not s.delivered:
            # Before the first byte: invisible to the client. A node that was merely full
            # stays eligible; one that failed is not tried again.
            return _retry(s, message, exclude=code != BUSY)
        case Failed(code=code, message=message, usage=usage):
            return _end(s, JobStatus.FAILED, JobError(code, message), usage=usage)
        case Lost() if s.cancelling:
            return _end(s, JobStatus.CANCELLED, CANCELLED)
        case Lost(reason=reason) if not s.delivered:
            return _retry(s, reason, exclude=True)
        case Lost(reason=reason):
            # Nothing is metered: the node that vanished reported no usage for what it had
            # delivered, so the client is not charged.
            return _end(s, JobStatus.FAILED, JobError("node_lost", f"the node serving this job went away mid-stream ({reason})"), usage=None)
        case CancelRequested() if s.status is JobStatus.QUEUED:
            return _end(s, JobStatus.CANCELLED, JobError("cancelled", "cancelled before it started"))
        case CancelRequested() if not s.cancelling:
            return msgspec.structs.replace(s, cancelling=True)
        case TimedOut() if s.cancelling:
            return _end(s, JobStatus.CANCELLED, CANCELLED)
        case TimedOut(retry_after=wait) if s.status is JobStatus.QUEUED:
            if s.attempts:
                return _end(s, JobStatus.FAILED, JobError("node_failed", f"failed after {s.attempts} attempts: {s.last_error}"))
            return _end(s, JobStatus.FAILED, JobError(BUSY, "every node serving this model stayed busy", wait))
        case Unplaceable(code=code, message=message, retry_after=wait) if s.status is JobStatus.QUEUED:
            if s.attempts and code != BUSY:
                return _end(s, JobStatus.FAILED, JobError("node_failed", f"failed after {s.attempts} attempts: {s.last_error}"))
            return _end(s, JobStatus.FAILED, JobError(code, message, wait))
    return s


# -- what a transition asks the driver to do ----------------------------------------------


class Effect(StrEnum):
    DISPATCH = "dispatch"  # send the job to its node
    MARK_RUNNING = "mark_running"  # persist assigned -> running
    CANCEL_NODE = "cancel_node"  # tell the node to stop; wait a grace period for its usage
    RELEASE = "release"  # free the node's slot and judge the attempt
    REQUEUE = "requeue"  # persist the job back to queued
    END = "end"  # publish the final event, persist, settle


def effects(old: JobState, new: JobState) -> tuple[Effect, ...]:
    if old is new:
        return ()
    out: list[Effect] = []
    if old.status is JobStatus.QUEUED and new.status is JobStatus.ASSIGNED:
        out.append(Effect.DISPATCH)
    if old.status is JobStatus.ASSIGNED and new.status is JobStatus.RUNNING:
        out.append(Effect.MARK_RUNNING)
    if new.cancelling and not old.cancelling and not new.status.terminal:
        out.append(Effect.CANCEL_NODE)
    # The end is published before the slot is freed: the client's last event comes first.
    if new.status.terminal and not old.status.terminal:
        out.append(Effect.END)
    if old.status.on_node and not new.status.on_node:
        out.append(Effect.RELEASE)
    if old.status.on_node and new.status is JobStatus.QUEUED:
        out.append(Effect.REQUEUE)
    return tuple(out)


class Outcome(StrEnum):
    """What one attempt says about its node's health."""

    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"  # cancelled, a client's mistake, busy, or a lost link (counted on the drop)


def outcome(event: Event, new: JobState) -> Outcome:
    if new.status is JobStatus.COMPLETED:
        return Outcome.SUCCESS
    if isinstance(event, Failed) and not new.cancelling and event.code != BUSY:
        if new.status is JobStatus.QUEUED or event.code not in CLIENT_FAULTS:
            return Outcome.FAILURE
    return Outcome.NEUTRAL
