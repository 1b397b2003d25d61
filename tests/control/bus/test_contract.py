"""What every bus promises, run on both: the embedded `LocalBus` (one process, so both "sides"
are the same bus) and `RedisBus` on real Redis (two buses standing for two replicas: the node's
socket on one, the job's driver on the other). Anything the driver or the node sessions rely
on belongs here; what only one bus has (Redis liveness, a dropped frame with no driver) stays
in its own file."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import pytest

from infernet.control.bus import (
    Cancel,
    CancelJob,
    Dispatch,
    JobFrame,
    LocalBus,
    NodeGone,
    NodeInfo,
    NodeLoad,
    NodeSeen,
    Release,
    Reserve,
)
from infernet.control.bus.redis import RedisBus
from infernet.protocol.messages import Done, Job, ModelAd, Tokens, Usage
from tests.control.bus.sides import Side, until


@dataclass
class Pair:
    """`nodes`: the bus of the replica holding n1's socket; `driver`: the one driving jobs."""

    nodes: object
    driver: object
    side: Side = field(default_factory=Side)
    seen: list = field(default_factory=list)  # fleet deltas as the driver's replica hears them


@contextlib.asynccontextmanager
async def local_pair():
    bus = LocalBus("r-a")
    pair = Pair(bus, bus)
    bus.serve(pair.side)
    bus.watch(pair.seen.append)
    await bus.start()
    try:
        yield pair
    finally:
        await bus.aclose()


@contextlib.asynccontextmanager
async def redis_pair(url: str):
    a, b = RedisBus(url, replica="r-a"), RedisBus(url, replica="r-b")
    pair = Pair(a, b)
    a.serve(pair.side)
    b.serve(Side())  # r-b holds no node of its own
    b.watch(pair.seen.append)
    await a.start()
    await b.start()
    try:
        yield pair
    finally:
        await asyncio.wait_for(asyncio.gather(a.aclose(), b.aclose()), 10)


@pytest.fixture(params=["local", "redis"])
async def pair(request):
    """n1 is online on the nodes' replica, and the driver's replica has heard of it."""
    opened = local_pair() if request.param == "local" else redis_pair(request.getfixturevalue("redis_url"))
    async with opened as p:
        p.nodes.announce(NodeSeen(info()))
        await until(lambda: p.seen)
        p.seen.clear()
        yield p


def info(node_id: str = "n1", replica: str = "r-a", session: str = "s1") -> NodeInfo:
    return NodeInfo(node_id=node_id, models=(ModelAd(name="m"),), tier="cpu", capacity=2, session=session, replica=replica)


async def test_slots_are_decided_by_the_side_that_holds_the_node(pair):
    assert await pair.driver.send(Reserve("n1", "j1")) is True
    assert await pair.driver.send(Reserve("n1", "j2")) is True
    assert await pair.driver.send(Reserve("n1", "j3")) is False  # the node's two slots are taken
    assert await pair.driver.send(Release("n1", "j1")) is True
    assert await pair.driver.send(Reserve("n1", "j3")) is True
    assert pair.side.active == {"j2", "j3"}
    assert await pair.driver.send(Reserve("nobody", "j4")) is False  # no side holds that node


async def test_dispatch_and_cancel_reach_the_node_side_in_order(pair):
    job = Job(job_id="j1", kind="chat", body={"messages": [{"role": "user", "content": "hi"}]})
    assert await pair.driver.send(Reserve("n1", "j1"))
    assert await pair.driver.send(Dispatch("n1", job))
    assert await pair.driver.send(Cancel("n1", "j1"))
    assert pair.side.got == [Reserve("n1", "j1"), Dispatch("n1", job), Cancel("n1", "j1")]


async def test_a_jobs_frames_reach_the_replica_that_dispatched_it_in_order(pair):
    got: dict[str, list] = {"j1": [], "j2": []}
    for job_id in got:
        assert await pair.driver.send(Dispatch("n1", Job(job_id=job_id, kind="chat", body={})))
    pair.driver.follow("j1", got["j1"].append)
    pair.driver.follow("j2", got["j2"].append)
    frames = [JobFrame("j1", "n1", Tokens(job_id="j1", text=f"w{i} ")) for i in range(20)]
    done = JobFrame("j2", "n1", Done(job_id="j2", usage=Usage(3, 1)))
    for f in frames:
        pair.nodes.publish(f)  # where the node's socket is
    pair.nodes.publish(done)
    await until(lambda: len(got["j1"]) == 20 and got["j2"])
    assert got == {"j1": frames, "j2": [done]}
    pair.driver.unfollow("j1")
    pair.nodes.publish(frames[0])
    await asyncio.sleep(0.1)
    assert len(got["j1"]) == 20


async def test_fleet_deltas_reach_every_replica_in_order(pair):
    deltas = [NodeSeen(info("n2")), NodeLoad("n2", "s1", 1), NodeGone("n2", "s1", "node disconnected", busy=False)]
    for d in deltas:
        pair.nodes.announce(d)
    await until(lambda: len(pair.seen) >= 3)
    assert pair.seen == deltas


async def test_driver_messages_reach_the_replica_driving_the_job(pair):
    got: list = []
    pair.driver.drive(got.append)
    pair.nodes.tell(pair.driver.replica, CancelJob("j9", "cancelled by the client"))
    await until(lambda: got)
    assert got == [CancelJob("j9", "cancelled by the client")]
