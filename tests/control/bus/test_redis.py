"""The Redis bus between replicas: each message reaches the replica that holds its node or
drives its job, the fleet view is shared, and a replica that goes away takes its nodes with
it. Two buses in one test stand for two replicas (real Redis on 127.0.0.1:6379)."""

from __future__ import annotations

import asyncio
import contextlib

from infernet.control.bus import (
    CancelJob,
    Dispatch,
    JobFrame,
    NodeGone,
    NodeInfo,
    NodeSeen,
    Release,
    Reserve,
)
from infernet.control.bus.redis import RedisBus
from infernet.protocol.messages import Job, ModelAd, Tokens


async def until(cond, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "not in time"
        await asyncio.sleep(0.01)


def node(node_id: str, replica: str, session: str = "s1") -> NodeInfo:
    return NodeInfo(node_id=node_id, models=(ModelAd(name="m"),), tier="cpu", capacity=2, session=session, replica=replica)


class Side:
    """A replica's node sessions, reduced to what the bus asks of them."""

    def __init__(self) -> None:
        self.got: list = []
        self.active: set[str] = set()

    async def handle(self, msg) -> bool:
        self.got.append(msg)
        if isinstance(msg, Reserve):
            if len(self.active) >= 2:
                return False
            self.active.add(msg.job_id)
        elif isinstance(msg, Release):
            self.active.discard(msg.job_id)
        return True


@contextlib.asynccontextmanager
async def replica(redis_url: str, name: str):
    bus = RedisBus(redis_url, replica=name)
    seen: list = []
    bus.watch(seen.append)
    side = Side()
    bus.serve(side)
    await bus.start()
    try:
        yield bus, side, seen
    finally:
        await bus.aclose()


async def test_a_node_on_one_replica_is_reserved_dispatched_and_streams_to_another(redis_url):
    async with replica(redis_url, "r-a") as (a, side_a, _), replica(redis_url, "r-b") as (b, _, seen_b):
        a.announce(NodeSeen(node("n1", "r-a")))
        await until(lambda: any(isinstance(m, NodeSeen) for m in seen_b))
        frames: list = []
        b.follow("job-1", frames.append)  # r-b drives job-1, on r-a's node
        assert await b.send(Reserve("n1", "job-1")) is True
        assert await b.send(Dispatch("n1", Job(job_id="job-1", kind="chat", body={}))) is True
        assert side_a.active == {"job-1"} and isinstance(side_a.got[-1], Dispatch)
        a.publish(JobFrame("job-1", "n1", Tokens(job_id="job-1", text="hello")))  # the node's frame, at r-a
        await until(lambda: frames)
        assert frames == [JobFrame("job-1", "n1", Tokens(job_id="job-1", text="hello"))]
        assert await b.send(Reserve("n1", "job-2")) and not await b.send(Reserve("n1", "job-3"))  # the node's slots are r-a's to give
        assert await b.send(Release("n1", "job-1"))
        assert await b.send(Reserve("unknown-node", "job-4")) is False


async def test_a_replica_that_starts_later_routes_over_the_whole_fleet(redis_url):
    async with replica(redis_url, "r-a") as (a, _, _):
        a.announce(NodeSeen(node("n1", "r-a")))
        await asyncio.sleep(0.2)  # the nodes hash is written behind the announcement
        async with replica(redis_url, "r-b") as (_, _, seen_b):
            assert [m.info.node_id for m in seen_b if isinstance(m, NodeSeen)] == ["n1"]


async def test_driver_messages_reach_the_replica_driving_the_job(redis_url):
    async with replica(redis_url, "r-a") as (a, _, _), replica(redis_url, "r-b") as (b, _, _):
        got: list = []
        b.drive(got.append)
        a.tell("r-b", CancelJob("job-9", "cancelled by the client"))
        await until(lambda: got)
        assert got == [CancelJob("job-9", "cancelled by the client")]


async def test_a_replica_that_goes_away_takes_its_nodes_with_it(redis_url):
    async with replica(redis_url, "r-b") as (b, _, seen_b):
        a = RedisBus(redis_url, replica="r-a")
        a.serve(Side())
        await a.start()
        a.announce(NodeSeen(node("n1", "r-a", "sess-1")))
        await until(lambda: any(isinstance(m, NodeSeen) for m in seen_b))
        for task in a._tasks:  # the process dies: no more beats, nothing said
            task.cancel()
        await until(lambda: any(isinstance(m, NodeGone) for m in seen_b), timeout=10)
        gone = next(m for m in seen_b if isinstance(m, NodeGone))
        assert (gone.node_id, gone.session, gone.busy) == ("n1", "sess-1", True)
        assert await b.send(Reserve("n1", "job-1")) is False
        await a._r.aclose()


async def test_a_reconnect_elsewhere_replaces_the_old_session(redis_url):
    async with replica(redis_url, "r-a") as (a, _, _), replica(redis_url, "r-b") as (b, side_b, seen_b):
        a.announce(NodeSeen(node("n1", "r-a", "old")))
        await until(lambda: len(seen_b) == 1)
        b.announce(NodeSeen(node("n1", "r-b", "new")))  # the node moved to r-b
        a.announce(NodeGone("n1", "old", "node disconnected", busy=False))  # r-a hears its old socket close
        await asyncio.sleep(0.3)
        assert await a.send(Reserve("n1", "job-1")) is True and side_b.active == {"job-1"}


async def test_a_replica_taken_for_gone_announces_its_nodes_again_when_it_is_back(redis_url):
    async with replica(redis_url, "r-b") as (b, _, seen_b):
        a = RedisBus(redis_url, replica="r-a")
        a.serve(Side())
        await a.start()
        a.announce(NodeSeen(node("n1", "r-a", "sess-1")))
        await until(lambda: any(isinstance(m, NodeSeen) for m in seen_b))
        a._tasks[3].cancel()  # r-a stalls: no beat (its other tasks still read and write)
        await a._r.delete(a._k("replica", "r-a"))  # ... past ALIVE_S: its key ran out
        await until(lambda: any(isinstance(m, NodeGone) for m in seen_b), timeout=10)
        assert await b.send(Reserve("n1", "job-1")) is False  # r-b routes around n1 now
        await a._beat()  # r-a's loop comes back
        await until(lambda: isinstance(seen_b[-1], NodeSeen), timeout=10)
        assert await b.send(Reserve("n1", "job-1")) is True  # n1 is back in r-b's view
        await a.aclose()
