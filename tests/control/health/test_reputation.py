"""Reputation: measured, decaying, and hard on wrong answers."""

from __future__ import annotations

import pytest

from infernet.control.health.reputation import Record, Reputation


def test_a_new_node_starts_below_a_proven_one_and_failures_cost():
    r = Reputation()
    new = r.of("a", ">=24gb").score(0)
    good = r.of("b", ">=24gb")
    for t in range(20):
        good.completed(t, ttft_s=0.2, tokens=100, stream_s=1.0)
    bad = r.of("c", ">=24gb")
    for t in range(5):
        bad.completed(t, ttft_s=0.2, tokens=100, stream_s=1.0)
        bad.failure(t)
    assert new == pytest.approx(0.8)
    assert good.score(20) > new > bad.score(5)


def test_speed_is_judged_against_the_tier_range():
    fast = Record(">=48gb", 3600)
    fast.completed(0, ttft_s=0.1, tokens=101, stream_s=1.0)  # 100 tokens/s: within 50-150
    slow = Record(">=48gb", 3600)
    slow.completed(0, ttft_s=0.1, tokens=11, stream_s=1.0)  # 10 tokens/s: a cpu pretending
    assert slow.tokens_per_s == pytest.approx(10)
    assert slow.score(0) == pytest.approx(fast.score(0) * 0.25)
    cpu = Record("cpu", 3600)
    cpu.completed(0, ttft_s=0.1, tokens=11, stream_s=1.0)
    assert cpu.score(0) == pytest.approx(fast.score(0))


def test_slow_first_tokens_cost():
    r = Record("cpu", 3600)
    r.completed(0, ttft_s=8.0, tokens=0, stream_s=None)
    assert r.ttft_ms == pytest.approx(8000)
    assert r.score(0) == pytest.approx((5 / 6) * 0.25)


def test_a_wrong_answer_costs_most_and_everything_decays():
    r = Record("cpu", half_life_s=100)
    for t in range(10):
        r.completed(t, ttft_s=0.1, tokens=0, stream_s=None)
    before = r.score(10)
    r.verification(10, passed=False)
    assert r.score(10) < before * 0.1
    assert r.score(10 + 1000) > 0.75  # ten half-lives later the lie is forgotten
    assert r.faked < 0.001
