"""Circuit breakers: open after failures in a row, grow the cooldown, one probe closes."""

from __future__ import annotations

import math

from infernet.control.health.circuit import Breaker, BreakerPolicy


def test_opens_after_threshold_and_a_successful_probe_closes_it():
    b = Breaker(BreakerPolicy(threshold=3, cooldown_s=5, max_cooldown_s=300))
    b.on_failure(0)
    b.on_failure(1)
    assert b.blocked_until(1) == 0.0 and b.state == "closed"
    b.on_failure(2)
    assert b.state == "open" and b.blocked_until(2) == 7.0
    b.on_assign(3)  # a job before the cooldown ends is not a probe
    assert not b.probing
    b.on_assign(7)
    assert b.state == "half-open" and b.blocked_until(7) == math.inf  # one probe at a time
    b.on_success()
    assert b.state == "closed" and b.blocked_until(8) == 0.0


def test_a_failed_probe_doubles_the_cooldown_up_to_the_cap():
    b = Breaker(BreakerPolicy(threshold=1, cooldown_s=5, max_cooldown_s=12))
    b.on_failure(0)
    assert b.blocked_until(0) == 5
    b.on_assign(5)
    b.on_failure(5)
    assert b.blocked_until(5) == 15  # 10 s
    b.on_assign(15)
    b.on_failure(15)
    assert b.blocked_until(15) == 27  # capped at 12 s


def test_success_resets_the_run_of_failures():
    b = Breaker(BreakerPolicy(threshold=2))
    b.on_failure(0)
    b.on_success()
    b.on_failure(1)
    assert b.state == "closed"


def test_an_abandoned_probe_lets_the_next_job_probe():
    b = Breaker(BreakerPolicy(threshold=1, cooldown_s=1))
    b.on_failure(0)
    b.on_assign(2)
    b.on_abandon()
    assert b.blocked_until(2) == 1 and b.state == "open"
    b.on_assign(2)
    assert b.probing


def test_a_failed_verification_opens_at_once_with_a_long_cooldown():
    b = Breaker(BreakerPolicy(threshold=3, cooldown_s=5, max_cooldown_s=300))
    b.on_failure(0, severe=True)
    assert b.blocked_until(0) == 40
