"""The seam between where a node's socket lives and where a job is driven.

Three directions, each with frozen messages:
- to a node (`send`): reserve or release one of its slots, dispatch a job to it, cancel one;
  answered by whoever holds the node's socket (the slot authority for its nodes);
- to a job (`publish`): a node's frames for the job, or the news that its node is gone;
  delivered to whoever drives the job;
- to the fleet (`announce`): node state deltas (joined or changed, load, gone), delivered to
  every replica's placement.

In one process the bus is direct calls (`LocalBus`); in a cluster it is Redis, and nothing
above it changes. Shaped like httpx's transports: one small protocol, one in-memory
implementation that tests drive directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import msgspec

from infernet.protocol.messages import Accept, Done, Fail, Job, ModelAd, Tokens

# -- to a node --------------------------------------------------------------------------


class Reserve(msgspec.Struct, frozen=True):
    node_id: str
    job_id: str


class Release(msgspec.Struct, frozen=True):
    node_id: str
    job_id: str


class Dispatch(msgspec.Struct, frozen=True):
    node_id: str
    job: Job


class Cancel(msgspec.Struct, frozen=True):
    node_id: str
    job_id: str


ToNode = Reserve | Release | Dispatch | Cancel

# -- to a job ---------------------------------------------------------------------------


class JobFrame(msgspec.Struct, frozen=True):
    """A frame the node sent for the job."""

    job_id: str
    node_id: str
    frame: Accept | Tokens | Done | Fail


class NodeLost(msgspec.Struct, frozen=True):
    """The job's node went away (disconnected, silent, or replaced by a reconnect)."""

    job_id: str
    node_id: str
    reason: str


ToJob = JobFrame | NodeLost

# -- to the fleet -----------------------------------------------------------------------


class NodeInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What routing needs to know of a node, as it announced itself (checked by the
    sessions that hold its socket)."""

    node_id: str
    models: tuple[ModelAd, ...]
    tier: str
    capacity: int
    active: int = 0
    price: dict[str, int] | None = None  # the node's own ask, micro-USDC per million tokens
    name: str = ""
    backend: str = ""


class NodeSeen(msgspec.Struct, frozen=True):
    """A node joined, or its models or capacity changed."""

    info: NodeInfo


class NodeLoad(msgspec.Struct, frozen=True):
    node_id: str
    active: int


HEARTBEAT_LOST = "node stopped heartbeating"


class NodeGone(msgspec.Struct, frozen=True):
    node_id: str
    reason: str
    busy: bool  # it held jobs when it went


FleetDelta = NodeSeen | NodeLoad | NodeGone

JobHandler = Callable[[ToJob], None]
FleetHandler = Callable[[FleetDelta], None]


class NodeSide(Protocol):
    """Whoever holds node sockets: answers messages addressed to its nodes."""

    async def handle(self, msg: ToNode) -> bool: ...


class Bus(Protocol):
    async def send(self, msg: ToNode) -> bool:
        """Deliver to the holder of `msg.node_id`'s socket. True when done: the slot was
        reserved, the frame went out. False when the node is unknown or full."""
        ...

    def publish(self, msg: ToJob) -> None:
        """Deliver to the driver of `msg.job_id`; dropped when nobody drives it. Never blocks:
        this is the relay's hot path."""
        ...

    def announce(self, msg: FleetDelta) -> None:
        """Deliver to every watcher of the fleet."""
        ...

    def serve(self, nodes: NodeSide) -> None:
        """Register this replica's node sessions as the addressee of its nodes' messages."""
        ...

    def follow(self, job_id: str, handler: JobHandler) -> None: ...

    def unfollow(self, job_id: str) -> None: ...

    def watch(self, handler: FleetHandler) -> None: ...

    async def aclose(self) -> None: ...
