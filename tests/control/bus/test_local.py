"""The in-process bus: messages reach exactly their addressee."""

from __future__ import annotations

from infernet.control.bus import (
    Dispatch,
    JobFrame,
    LocalBus,
    NodeGone,
    NodeLoad,
    NodeLost,
    Reserve,
)
from infernet.protocol.messages import Job, Tokens


async def test_job_messages_reach_the_jobs_driver_only():
    bus = LocalBus()
    got: dict[str, list] = {"a": [], "b": []}
    bus.follow("a", got["a"].append)
    bus.follow("b", got["b"].append)
    frame = JobFrame("a", "n1", Tokens(job_id="a", text="hi"))
    bus.publish(frame)
    bus.publish(NodeLost("b", "n1", "gone"))
    bus.publish(NodeLost("nobody", "n1", "gone"))  # no driver: dropped, no error
    assert got == {"a": [frame], "b": [NodeLost("b", "n1", "gone")]}
    bus.unfollow("a")
    bus.publish(frame)
    assert got["a"] == [frame]


async def test_fleet_deltas_reach_every_watcher():
    bus = LocalBus()
    seen: list[list] = [[], []]
    for s in seen:
        bus.watch(s.append)
    bus.announce(NodeLoad("n1", 2))
    bus.announce(NodeGone("n1", "bye", busy=False))
    assert seen[0] == seen[1] == [NodeLoad("n1", 2), NodeGone("n1", "bye", busy=False)]


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
