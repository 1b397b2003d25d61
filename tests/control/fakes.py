"""The node side of a bus without sockets: fake nodes that answer jobs from a script.

`FakeFleet` stands where `NodeSessions` stands in a real control plane: it is the slot
authority for its nodes, takes Dispatch and Cancel off the bus, and publishes the nodes'
frames back as a real node's sessions would. A script is `async def script(node, job)`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from infernet.control.bus import (
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
from infernet.protocol.messages import Accept, Done, Fail, Job, ModelAd, Tokens, Usage

Script = Callable[["FakeNode", Job], Awaitable[None]]


async def answer(node: FakeNode, job: Job, text: str = "hello there") -> None:
    """What an honest, instant engine does."""
    node.accept(job)
    words = text.split()
    for i, w in enumerate(words):
        node.tokens(job, w if i == 0 else " " + w)
    node.done(job, Usage(1, len(words)))


async def stall(node: FakeNode, job: Job) -> None:
    """An engine that takes the job and never answers (until cancelled)."""
    node.accept(job)
    await asyncio.sleep(3600)


@dataclass
class FakeNode:
    fleet: FakeFleet
    node_id: str
    models: tuple[str, ...] = ("m",)
    capacity: int = 1
    tier: str = "cpu"
    script: Script = answer
    active: set[str] = field(default_factory=set)
    jobs: list[Job] = field(default_factory=list)  # every job dispatched here, in order
    cancels: list[str] = field(default_factory=list)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    session: str = "s1"

    def info(self) -> NodeInfo:
        return NodeInfo(
            node_id=self.node_id, models=tuple(ModelAd(name=m) for m in self.models), tier=self.tier, capacity=self.capacity,
            active=len(self.active), session=self.session,
        )

    def _frame(self, job: Job, frame: Any) -> None:
        if job.job_id in self.active:  # as the sessions filter it: a released job's frames are late
            self.fleet.bus.publish(JobFrame(job.job_id, self.node_id, frame))

    def accept(self, job: Job) -> None:
        self._frame(job, Accept(job_id=job.job_id))

    def tokens(self, job: Job, text: str) -> None:
        self._frame(job, Tokens(job_id=job.job_id, text=text))

    def done(self, job: Job, usage: Usage, finish: str = "stop") -> None:
        self._frame(job, Done(job_id=job.job_id, usage=usage, finish_reason=finish))

    def fail(self, job: Job, message: str, *, code: str = "backend_error", retryable: bool = False, usage: Usage | None = None) -> None:
        self._frame(job, Fail(job_id=job.job_id, message=message, code=code, retryable=retryable, usage=usage))

    def vanish(self, reason: str = "node disconnected") -> None:
        self.fleet.drop(self.node_id, reason)


class FakeFleet:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.nodes: dict[str, FakeNode] = {}
        bus.serve(self)

    def add(self, node_id: str, **kw: Any) -> FakeNode:
        node = self.nodes[node_id] = FakeNode(self, node_id, **kw)
        self.bus.announce(NodeSeen(node.info()))
        return node

    def drop(self, node_id: str, reason: str) -> None:
        node = self.nodes.pop(node_id)
        jobs, node.active = node.active, set()
        self.bus.announce(NodeGone(node_id, node.session, reason, busy=bool(jobs)))
        for task in node.tasks.values():
            task.cancel()

    async def handle(self, msg: ToNode) -> bool:
        node = self.nodes.get(msg.node_id)
        if node is None:
            return False
        match msg:
            case Reserve(job_id=job_id):
                if len(node.active) >= node.capacity:
                    return False
                node.active.add(job_id)
            case Release(job_id=job_id):
                node.active.discard(job_id)
            case Dispatch(job=job):
                node.jobs.append(job)
                node.tasks[job.job_id] = asyncio.create_task(node.script(node, job))
                return True
            case Cancel(job_id=job_id):
                node.cancels.append(job_id)
                return True
        self.bus.announce(NodeLoad(node.node_id, node.session, len(node.active)))
        return True
