"""The job driver through the in-process bus, with fake nodes: no sockets, no uvicorn.

Each fault rule of docs/architecture.md, driven end to end: placement, the claim in a real
SQLite store, the node's frames, the final row.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import pytest

from infernet.control import Settings
from infernet.control.bus import LocalBus
from infernet.control.dispatch.driver import Driver
from infernet.control.dispatch.live import LiveJob
from infernet.control.dispatch.placement import Placement
from infernet.control.dispatch.router import RouteRequest
from infernet.control.health import Health
from infernet.control.health.verify import VerifyPolicy
from infernet.control.store import Store
from infernet.protocol.messages import Job, Usage
from tests.control.fakes import FakeFleet, FakeNode, answer, stall

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@dataclass
class Rig:
    store: Store
    placement: Placement
    driver: Driver
    fleet: FakeFleet

    async def submit(self, key: str = "k", route: RouteRequest | None = None, model: str = "m") -> LiveJob:
        live, _ = await self.driver.submit(key, "chat", model, {**BODY, "model": model}, route=route)
        assert live is not None
        return live

    async def row(self, live: LiveJob) -> dict:
        await asyncio.wait_for(live.ended.wait(), 5)
        row = await self.store.jobs.get(live.id)
        assert row is not None
        return row


@pytest.fixture
async def rig(tmp_path):
    store = await Store.open(f"sqlite:///{tmp_path / 'driver.db'}")
    bus = LocalBus()
    health = Health()
    placement = Placement(bus, health, max_queued_per_key=3, rng=random.Random(1))
    settings = Settings(queue_timeout_s=1.0, cancel_grace_s=0.2, max_attempts=3, verify=VerifyPolicy(canary_rate=0), seed=1)
    driver = Driver(store, bus, placement, health, settings)
    yield Rig(store, placement, driver, FakeFleet(bus))
    await driver.aclose()
    await store.close()


async def ended(live: LiveJob) -> LiveJob:
    await asyncio.wait_for(live.finished.wait(), 5)
    return live


async def read(live: LiveJob) -> list:
    """What a client streaming the job gets."""
    return [e async for e in live.follow()]


def texts(live: LiveJob) -> list[str]:
    return [d["text"] for _, t, d in live.events if t == "token"]


async def test_a_job_runs_on_a_node_and_is_stored(rig):
    node = rig.fleet.add("n1")
    live = await ended(await rig.submit())
    assert live.status == "completed" and live.output == "hello there" and texts(live) == ["hello", " there"]
    assert live.events[-1][1] == "done"
    row = await rig.row(live)
    assert (row["status"], row["node_id"], row["attempts"], row["output"], row["completion_tokens"]) == ("completed", "n1", 1, "hello there", 2)
    assert [j.job_id for j in node.jobs] == [live.id] and not node.active  # the slot came back


async def test_a_node_lost_before_the_first_token_is_retried_elsewhere_invisibly(rig):
    async def vanish(node: FakeNode, job: Job) -> None:
        node.accept(job)
        node.vanish()

    rig.fleet.add("bad", script=vanish)
    rig.fleet.add("good")
    live = await ended(await rig.submit(route=RouteRequest("m", preferred_node="bad")))
    assert live.status == "completed" and live.output == "hello there" and live.node_id == "good"
    assert [e[1] for e in live.events] == ["token", "token", "done"]  # nothing of the lost attempt
    assert (await rig.row(live))["attempts"] == 2


async def test_a_node_lost_after_a_client_took_output_fails_cleanly(rig):
    async def die(node: FakeNode, job: Job) -> None:
        node.accept(job)
        node.tokens(job, "partial")
        await asyncio.sleep(0.05)
        node.vanish()

    rig.fleet.add("n1", script=die)
    rig.fleet.add("n2")  # another node could have served it, but the client has output already
    live = await rig.submit(route=RouteRequest("m", preferred_node="n1"))
    seen = asyncio.create_task(read(live))  # a client streaming the answer
    await ended(live)
    assert live.status == "failed" and live.error["code"] == "node_lost"
    assert [t for _, t, _ in await seen] == ["token", "error"]
    row = await rig.row(live)
    assert row["status"] == "failed" and row["prompt_tokens"] is None  # nothing metered
    assert not rig.fleet.nodes["n2"].jobs


async def test_output_no_client_took_yet_is_thrown_away_and_the_job_retried(rig):
    async def die(node: FakeNode, job: Job) -> None:
        node.accept(job)
        node.tokens(job, "the lost attempt")
        await asyncio.sleep(0.01)
        node.vanish()

    rig.fleet.add("n1", script=die)
    rig.fleet.add("n2")
    live = await ended(await rig.submit(route=RouteRequest("m", preferred_node="n1")))
    assert live.status == "completed" and live.node_id == "n2" and live.output == "hello there"
    assert [d for _, t, d in live.events if t == "token"] == [{"text": "hello"}, {"text": " there"}]


async def test_a_retryable_failure_excludes_the_node_and_a_full_one_does_not(rig):
    async def broken(node: FakeNode, job: Job) -> None:
        node.fail(job, "engine crashed", retryable=True)

    rig.fleet.add("broken", script=broken)
    rig.fleet.add("ok")
    live = await ended(await rig.submit(route=RouteRequest("m", preferred_node="broken")))
    assert live.status == "completed" and live.node_id == "ok"
    assert len(rig.fleet.nodes["broken"].jobs) == 1  # never tried again

    calls = 0

    async def full_once(node: FakeNode, job: Job) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            return node.fail(job, "node at capacity", code="over_capacity", retryable=True)
        await answer(node, job)

    rig.fleet.add("busy", script=full_once)
    live = await ended(await rig.submit(route=RouteRequest("m", preferred_node="busy")))
    assert live.status == "completed" and live.node_id == "busy" and calls == 2


async def test_a_non_retryable_failure_keeps_the_engines_code(rig):
    async def too_long(node: FakeNode, job: Job) -> None:
        node.fail(job, "prompt is longer than the context", code="context_length_exceeded")

    rig.fleet.add("n1", script=too_long)
    live = await ended(await rig.submit())
    assert live.status == "failed" and live.error == {"message": "prompt is longer than the context", "code": "context_length_exceeded"}
    assert (await rig.row(live))["error"] == "prompt is longer than the context"


async def test_attempts_are_bounded_across_nodes(rig):
    async def crash(node: FakeNode, job: Job) -> None:
        node.fail(job, f"{node.node_id} crashed", retryable=True)

    for i in range(4):
        rig.fleet.add(f"n{i}", script=crash)
    live = await ended(await rig.submit())
    assert live.status == "failed" and live.error["code"] == "node_failed" and live.error["message"].startswith("failed after 3 attempts")
    assert sum(len(n.jobs) for n in rig.fleet.nodes.values()) == 3


async def test_cancel_while_queued_never_reaches_a_node(rig):
    node = rig.fleet.add("n1", script=stall)
    first = await rig.submit()
    waiting = await rig.submit()
    await asyncio.sleep(0.01)
    assert len(rig.placement.queue) == 1
    waiting.request_cancel()
    await ended(waiting)
    assert waiting.status == "cancelled" and waiting.error["message"] == "cancelled before it started"
    assert [j.job_id for j in node.jobs] == [first.id] and len(rig.placement.queue) == 0


async def test_cancel_on_a_node_takes_the_usage_it_reports(rig):
    async def metered(node: FakeNode, job: Job) -> None:
        node.accept(job)
        node.tokens(job, "a")
        while job.job_id not in node.cancels:
            await asyncio.sleep(0.005)
        node.done(job, Usage(1, 1), "cancelled")

    node = rig.fleet.add("n1", script=metered)
    live = await rig.submit()
    await asyncio.sleep(0.02)
    live.request_cancel()
    await ended(live)
    assert live.status == "cancelled" and live.usage["completion_tokens"] == 1 and node.cancels == [live.id]
    assert (await rig.row(live))["completion_tokens"] == 1


async def test_a_cancelled_node_that_stays_silent_is_given_up_after_the_grace(rig):
    node = rig.fleet.add("n1", script=stall)
    live = await rig.submit()
    await asyncio.sleep(0.01)
    live.request_cancel()
    await ended(live)
    assert live.status == "cancelled" and not node.active


async def test_unplaceable_jobs_say_why(rig):
    rig.fleet.add("n1", tier="cpu")
    live = await ended(await rig.submit(model="other"))
    assert live.error["code"] == "model_not_found"
    live = await ended(await rig.submit(route=RouteRequest("m", min_tier=">=24gb")))
    assert live.error["code"] == "no_eligible_node"


async def test_a_full_queue_refuses_and_the_deadline_gives_over_capacity(rig):
    rig.fleet.add("n1", script=stall)
    await rig.submit()
    waiting = [await rig.submit() for _ in range(3)]
    refused = await ended(await rig.submit())
    assert refused.error["code"] == "over_capacity" and refused.error["message"] == "too many jobs are waiting" and refused.error["retry_after"] >= 1
    for live in waiting:
        await asyncio.wait_for(live.finished.wait(), 3)
        assert live.error["code"] == "over_capacity" and live.error["message"] == "every node serving this model stayed busy"


async def test_freed_slots_go_round_robin_across_keys(rig):
    order: list[str] = []

    async def record(node: FakeNode, job: Job) -> None:
        order.append(job.body["key"])
        await asyncio.sleep(0.005)
        await answer(node, job)

    rig.fleet.add("n1", script=record)
    lives = []
    for key in ("a", "a", "a", "b"):
        live, _ = await rig.driver.submit(key, "chat", "m", {**BODY, "key": key})
        lives.append(live)
    await asyncio.gather(*(ended(x) for x in lives))
    assert order == ["a", "a", "b", "a"]


async def test_a_waiter_whose_last_node_goes_away_fails_at_once(rig):
    node = rig.fleet.add("n1", script=stall)
    running = await rig.submit()
    waiting = await rig.submit()
    await asyncio.sleep(0.01)
    node.vanish()
    await ended(waiting)
    await ended(running)
    assert waiting.error["code"] == "model_not_found"
    assert running.error == {"code": "node_failed", "message": "failed after 1 attempts: node disconnected"}


async def test_a_claim_taken_elsewhere_steps_aside_without_writing(rig):
    node = rig.fleet.add("n1")
    row = {"id": "chatcmpl-claimed", "key_id": "k", "kind": "chat", "model": "m", "status": "queued", "body": BODY}
    await rig.store.jobs.create(**row)
    await rig.store.jobs.transition(row["id"], ("queued",), "assigned", node_id="another-replicas-node")
    live = await ended(rig.driver.adopt(row))
    assert live.error["code"] == "claimed_elsewhere" and not node.jobs and not node.active
    assert (await rig.store.jobs.get(row["id"]))["status"] == "assigned"  # untouched


async def test_late_frames_of_a_released_job_change_nothing(rig):
    async def twice(node: FakeNode, job: Job) -> None:
        await answer(node, job)
        node.active.add(job.job_id)  # a buggy node side that lets a late frame through
        node.tokens(job, " more")
        node.done(job, Usage(9, 9))

    rig.fleet.add("n1", script=twice)
    live = await ended(await rig.submit())
    await asyncio.sleep(0.01)
    assert live.output == "hello there" and live.usage["completion_tokens"] == 2


async def test_a_node_gone_between_the_claim_and_the_job_frame_is_a_lost_attempt(rig):
    first = rig.fleet.add("first")
    rig.fleet.add("second")
    real = rig.fleet.handle

    async def vanish_on_dispatch(msg):  # the node's socket dies just as the job is sent
        from infernet.control.bus import Dispatch

        if isinstance(msg, Dispatch) and msg.node_id == "first":
            first.vanish()
        return await real(msg)

    rig.fleet.handle = vanish_on_dispatch  # type: ignore[method-assign]
    live = await ended(await rig.submit(route=RouteRequest("m", preferred_node="first")))
    assert live.status == "completed" and live.node_id == "second" and live.state.attempts == 2


async def test_a_waiter_cancelled_as_its_slot_frees_gives_the_slot_back(rig):
    """A slot handed to a waiter while the waiter was ending (cancelled, or out of time) is
    given back. The waiter's end takes a moment (its row and its hold are written); a slot
    that freed meanwhile went to it and stayed held for good: after 512 wrk clients hung up
    at once, the node looked full forever and every later request waited out its deadline."""
    release = asyncio.Event()

    async def held(node: FakeNode, job: Job) -> None:
        node.accept(job)
        if job.body.get("hold"):
            await release.wait()
        await answer(node, job)

    perform = rig.driver._perform
    slow: list[LiveJob] = []

    async def slow_database(effect, live, *rest):
        if live in slow:
            await asyncio.sleep(0.05)
        await perform(effect, live, *rest)

    rig.driver._perform = slow_database
    node = rig.fleet.add("n1", script=held)
    first, _ = await rig.driver.submit("k", "chat", "m", {**BODY, "hold": True})
    waiting = await rig.submit()
    slow.append(waiting)
    await asyncio.sleep(0.05)
    assert len(rig.placement.queue) == 1
    waiting.request_cancel()
    await asyncio.sleep(0.01)
    release.set()  # the slot frees while the waiter's cancel is being written
    await ended(waiting)
    await ended(first)
    after = await ended(await rig.submit())
    assert after.status == "completed", after.error  # the node's one slot is free again
    assert waiting.status == "cancelled" and [j.job_id for j in node.jobs] == [first.id, after.id]
