"""The seam between where a node's socket lives and where a job is driven.

Four directions, each with frozen messages:
- to a node (`send`): reserve or release one of its slots, dispatch a job to it, cancel one;
  answered by whoever holds the node's socket (the slot authority for its nodes);
- to a job (`publish`): a node's frames for the job, delivered to whoever drives the job;
- to a replica's driver (`tell`): cancel, or attach to, a job it drives, for a client whose
  request arrived at another replica;
- to the fleet (`announce`): node state deltas (joined or changed, load, gone) and health
  notes (an attempt judged, a verification), delivered to every replica, this one included.
  A job's node is lost when its session ends (`NodeGone`) or is replaced by another
  (`NodeSeen` with a new session): the driver learns it from the fleet, whichever replica
  held the socket, even one that died.

In one process the bus is direct calls (`LocalBus`); in a cluster it is Redis, and nothing
above it changes. Shaped like httpx's transports: one small protocol, one in-memory
implementation that tests drive directly.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any, Protocol

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


ToJob = JobFrame

# -- to the replica driving a job (a client's request arrived at another one) -----------


class CancelJob(msgspec.Struct, frozen=True):
    job_id: str
    reason: str = "cancelled by the client"


class Attach(msgspec.Struct, frozen=True):
    """Send the job's events after `after` to `follower`, as `Relay`s tagged `stream`."""

    job_id: str
    after: int
    follower: str  # the replica id of the one asking
    stream: str


class Relay(msgspec.Struct, frozen=True):
    """One event of an attached job, or None: the job is not live here (read the store)."""

    stream: str
    event: tuple[int, str, dict[str, Any]] | None


ToDriver = CancelJob | Attach | Relay

# -- to the fleet -----------------------------------------------------------------------


class NodeInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What routing needs to know of a node, as it announced itself (checked by the
    sessions that hold its socket)."""

    node_id: str
    models: tuple[ModelAd, ...]
    tier: str  # rated: its claim, checked against its hardware
    capacity: int
    active: int = 0
    price: dict[str, int] | None = None  # the node's own ask, micro-USDC per million tokens
    name: str = ""
    backend: str = ""
    session: str = ""  # this connection; a reconnect is a new session, and the old one's jobs are lost
    replica: str = ""  # the replica holding its socket


class NodeSeen(msgspec.Struct, frozen=True):
    """A node joined, or its models or capacity changed."""

    info: NodeInfo


class NodeLoad(msgspec.Struct, frozen=True):
    node_id: str
    session: str
    active: int


HEARTBEAT_LOST = "node stopped heartbeating"


class NodeGone(msgspec.Struct, frozen=True):
    """A node's session ended; its jobs there are lost."""

    node_id: str
    session: str
    reason: str
    busy: bool  # it held jobs when it went


class Judged(msgspec.Struct, frozen=True):
    """One attempt's outcome on a node, for every replica's view of its health."""

    node_id: str
    tier: str | None
    outcome: str  # success | failure | neutral
    ttft_s: float | None = None
    tokens: int = 0
    stream_s: float | None = None


class Verdict(msgspec.Struct, frozen=True):
    """A verification of a node's answer: passed or caught."""

    node_id: str
    passed: bool


FleetDelta = NodeSeen | NodeLoad | NodeGone | Judged | Verdict

JobHandler = Callable[[ToJob], None]
DriverHandler = Callable[[ToDriver], None]
FleetHandler = Callable[[FleetDelta], None]


class NodeSide(Protocol):
    """Whoever holds node sockets: answers messages addressed to its nodes."""

    async def handle(self, msg: ToNode) -> bool: ...


class Wiring:
    """Who this replica's messages go to: its node sessions, the driver of each of its jobs,
    the fleet's watchers and its driver. Both buses register handlers the same way; they
    differ only in how a message reaches another replica."""

    def __init__(self, replica: str | None = None) -> None:
        self._replica = replica or "r-" + secrets.token_hex(6)
        self._nodes: NodeSide | None = None
        self._jobs: dict[str, JobHandler] = {}
        self._fleet: list[FleetHandler] = []
        self._driver: DriverHandler | None = None

    @property
    def replica(self) -> str:
        return self._replica

    def serve(self, nodes: NodeSide) -> None:
        self._nodes = nodes

    def follow(self, job_id: str, handler: JobHandler) -> None:
        self._jobs[job_id] = handler

    def unfollow(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)

    def watch(self, handler: FleetHandler) -> None:
        self._fleet.append(handler)

    def drive(self, handler: DriverHandler) -> None:
        self._driver = handler


class Bus(Protocol):
    async def send(self, msg: ToNode) -> bool:
        """Deliver to the holder of `msg.node_id`'s socket. True when done: the slot was
        reserved, the frame went out. False when the node is unknown or full."""
        ...

    def publish(self, msg: ToJob) -> None:
        """Deliver to the driver of `msg.job_id`; dropped when nobody drives it. Never blocks:
        this is the relay's hot path."""
        ...

    def tell(self, replica: str, msg: ToDriver) -> None:
        """Deliver to the replica `replica`'s driver (cancel or attach to a job it drives)."""
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

    def drive(self, handler: DriverHandler) -> None:
        """Register this replica's driver as the addressee of `tell`."""
        ...

    @property
    def replica(self) -> str:
        """This replica's id."""
        ...

    async def start(self) -> None:
        """Connect, and learn the fleet as it stands (before the replica serves)."""
        ...

    async def aclose(self) -> None: ...
