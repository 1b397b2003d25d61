"""The adaptive concurrency limit, against simulated engines and behind a real control plane."""

from __future__ import annotations

import asyncio

from infernet.backends.fake import FakeBackend
from infernet.node.capacity import AdaptiveLimit
from tests.harness import Network


def drive(limit: AdaptiveLimit, ttft_of, rounds: int = 400) -> list[int]:
    """Run at the limit; the engine's time to first token depends on how many run at once."""
    seen = []
    for _ in range(rounds):
        n = limit.limit
        seen.append(limit.sample(ttft_of(n), n))
    return seen


def test_an_engine_that_never_slows_down_gets_the_maximum():
    limit = AdaptiveLimit(initial=4, maximum=512)
    assert drive(limit, lambda n: 0.002)[-1] == 512


def test_the_limit_settles_near_an_engines_knee():
    # A batching engine: flat up to 64 sequences, then queueing makes the first token wait.
    knee = 64
    limit = AdaptiveLimit(initial=4, maximum=512)
    seen = drive(limit, lambda n: 0.05 * max(1.0, n / knee) ** 2)
    assert 40 <= min(seen[-100:]) and max(seen[-100:]) <= 2.5 * knee, seen[-20:]


def test_overload_halves_it_and_idleness_says_nothing():
    limit = AdaptiveLimit(initial=64)
    assert limit.overloaded() == 32
    for _ in range(50):
        limit.sample(10.0, 1)  # one request at a time, however slow, is no evidence of overload
    assert limit.limit == 32
    assert AdaptiveLimit(initial=1, minimum=1).overloaded() == 1


async def test_an_engine_that_does_not_say_takes_a_burst_without_a_refusal(tmp_path):
    """One client sends 64 requests at once to a node whose engine tells no concurrency:
    the node learns a limit, the control plane queues what does not fit, nobody gets 429."""
    async with Network.start(tmp=tmp_path) as net:
        running = await net.add_node(FakeBackend(reply="a b c d", slots=None, delay_s=0.002))
        body = {"model": "fake-model", "messages": [{"role": "user", "content": "x"}]}
        async with net.client() as c:
            replies = await asyncio.gather(*(c.post("/v1/chat/completions", json=body) for _ in range(64)))
        assert [r.status_code for r in replies] == [200] * 64
        assert all(r.json()["choices"][0]["message"]["content"] == "a b c d" for r in replies)
        learned = running.node.status.capacity
        assert learned > 8 and net.cp.sessions.nodes[running.node.identity.pubkey].capacity == learned  # it grew, and the control plane knows
