"""A job of the job API whose output reached a follower must never run again elsewhere: the
replica that takes it over learns that from the store, so the store knows before the output
leaves."""

from __future__ import annotations

import asyncio

from infernet.control.dispatch.jobs import JobState
from infernet.control.dispatch.live import LiveJob


async def test_no_token_leaves_before_its_delivery_is_stored():
    live = LiveJob(JobState(id="job-1", key_id="k", kind="chat", model="m"), {})
    stored: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    calls: list[int] = []
    live.on_delivered = lambda: calls.append(1) or stored
    live.push_text("hello")
    follower = live.follow_batches(0)
    first = asyncio.ensure_future(follower.__anext__())
    await asyncio.sleep(0.05)
    assert not first.done() and calls == [1]  # waiting for the commit
    stored.set_result(True)
    batch = await first
    assert [(seq, typ, data["text"]) for seq, typ, data in batch] == [(1, "token", "hello")]
    live.push_text(" world")
    assert (await follower.__anext__())[0][2]["text"] == " world" and calls == [1]  # once per job
    await follower.aclose()
