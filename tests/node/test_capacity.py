"""The adaptive concurrency limit, against simulated engines."""

from __future__ import annotations

from infernet.node.capacity import AdaptiveLimit


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
