"""What only the in-process bus does (the shared promises are in test_contract.py): a frame
with no driver is dropped, one process has one replica."""

from __future__ import annotations

from infernet.control.bus import (
    CancelJob,
    Dispatch,
    JobFrame,
    LocalBus,
    Reserve,
)
from infernet.protocol.messages import Done, Job, Tokens, Usage


async def test_job_messages_reach_the_jobs_driver_only():
    bus = LocalBus()
    got: dict[str, list] = {"a": [], "b": []}
    bus.follow("a", got["a"].append)
    bus.follow("b", got["b"].append)
    frame = JobFrame("a", "n1", Tokens(job_id="a", text="hi"))
    done = JobFrame("b", "n1", Done(job_id="b", usage=Usage(1, 1)))
    bus.publish(frame)
    bus.publish(done)
    bus.publish(JobFrame("nobody", "n1", Tokens(job_id="nobody", text="x")))  # no driver: dropped, no error
    assert got == {"a": [frame], "b": [done]}
    bus.unfollow("a")
    bus.publish(frame)
    assert got["a"] == [frame]


async def test_node_messages_go_to_the_node_side_and_say_whether_they_landed():
    bus = LocalBus()
    assert await bus.send(Reserve("n1", "j")) is False  # nobody holds node sockets yet

    class Side:
        def __init__(self) -> None:
            self.got: list = []

        async def handle(self, msg) -> bool:
            self.got.append(msg)
            return isinstance(msg, Reserve)

    side = Side()
    bus.serve(side)
    job = Job(job_id="j", kind="chat", body={})
    assert await bus.send(Reserve("n1", "j")) is True
    assert await bus.send(Dispatch("n1", job)) is False
    assert side.got == [Reserve("n1", "j"), Dispatch("n1", job)]


async def test_driver_messages_reach_this_replicas_driver_only():
    bus = LocalBus("r-one")
    got: list = []
    bus.drive(got.append)
    bus.tell("r-one", CancelJob("j1"))
    bus.tell("r-other", CancelJob("j2"))  # no other replica in one process
    assert got == [CancelJob("j1")] and bus.replica == "r-one"
