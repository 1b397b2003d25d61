"""Node health, measured here: circuit breakers, reputation and verification, and the one
place where a job's outcome is folded into them.

Placement reads `view(node)` into each node's routing snapshot; every change calls
`on_change(node)` so the snapshot is rebuilt at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from infernet.control.dispatch.jobs import Outcome
from infernet.control.health.circuit import Breaker, BreakerPolicy
from infernet.control.health.reputation import Reputation
from infernet.hardware.tiers import EXPECTED_TPS

VERIFY_JOBS = 5  # measured jobs before a node's speed can vouch for its tier

log = logging.getLogger("infernet.control")


@dataclass(frozen=True, slots=True)
class View:
    tokens_per_s: float
    latency_ms: float
    reputation: float
    blocked_until: float


@dataclass(frozen=True, slots=True)
class Timing:
    """One attempt, measured on the control plane (monotonic seconds)."""

    sent_at: float
    first_at: float  # 0: no token arrived
    tokens: int


class Health:
    def __init__(self, breaker: BreakerPolicy | None = None, half_life_s: float = 3600.0) -> None:
        self.policy = breaker or BreakerPolicy()
        self.breakers: dict[str, Breaker] = {}
        self.reputation = Reputation(half_life_s)
        self.on_change: Callable[[str], None] = lambda node_id: None

    def breaker(self, node_id: str) -> Breaker:
        b = self.breakers.get(node_id)
        if b is None:
            b = self.breakers[node_id] = Breaker(self.policy)
        return b

    def verified(self, node_id: str, tier: str) -> bool:
        """Whether the node has shown the speed its rated tier promises: enough measured jobs
        at no less than the tier's expected low bound (hardware chapter), and no failed
        verification. The cpu tier needs no proof: there is nothing lower to pay."""
        if tier == "cpu":
            return True
        rec = self.reputation.records.get(node_id)
        low = EXPECTED_TPS.get(tier, EXPECTED_TPS["cpu"])[0]
        return rec is not None and rec.measured >= VERIFY_JOBS and rec.tokens_per_s >= low and rec.faked < 0.5

    def view(self, node_id: str, tier: str | None, now: float) -> View:
        rec = self.reputation.of(node_id, tier)
        return View(rec.tokens_per_s, rec.ttft_ms, rec.score(now), self.breaker(node_id).blocked_until(now))

    # -- what happened --------------------------------------------------------------------

    def assigned(self, node_id: str) -> None:
        """A job went to the node; past its cooldown, that job is the half-open probe."""
        self.breaker(node_id).on_assign(time.monotonic())

    def abandoned(self, node_id: str) -> None:
        """A reserved slot was given back without a verdict."""
        self.breaker(node_id).on_abandon()
        self.on_change(node_id)

    def judge(self, node_id: str, tier: str | None, outcome: Outcome, timing: Timing) -> None:
        """Fold one attempt's outcome into the node's breaker and reputation."""
        now = time.monotonic()
        breaker = self.breaker(node_id)
        rec = self.reputation.of(node_id, tier)
        if outcome is Outcome.SUCCESS:
            breaker.on_success()
            ttft = (timing.first_at or now) - timing.sent_at
            stream_s = now - timing.first_at if timing.first_at else None
            rec.completed(now, ttft_s=ttft, tokens=timing.tokens, stream_s=stream_s)
        elif outcome is Outcome.FAILURE:
            breaker.on_failure(now)
            rec.failure(now)
        else:
            breaker.on_abandon()
        self.on_change(node_id)

    def dropped(self, node_id: str, tier: str) -> None:
        """The node went away while it held jobs, or went silent: one failure, however many
        jobs it took down with it."""
        now = time.monotonic()
        self.breaker(node_id).on_failure(now)
        self.reputation.of(node_id, tier).failure(now)

    def verdict(self, node_id: str, passed: bool) -> None:
        """A verification's result; a failed one opens the circuit at once."""
        now = time.monotonic()
        self.reputation.of(node_id).verification(now, passed)
        if not passed:
            self.breaker(node_id).on_failure(now, severe=True)
        self.on_change(node_id)


__all__ = ["Breaker", "BreakerPolicy", "Health", "Reputation", "Timing", "View"]
