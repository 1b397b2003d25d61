"""Node health, measured here: circuit breakers, reputation and verification, and the one
place where a job's outcome is folded into them.

Placement reads `view(node)` into each node's routing snapshot; every change calls
`on_change(node)` so the snapshot is rebuilt at once. What one replica learns of a node it
shares: `judge` and `verdict` make notes (`Judged`, `Verdict`) that `share` sends to every
replica, this one included, and each applies them in `on_fleet`, so every replica's view of a
node's reputation and breaker is made from the same outcomes. (The half-open probe is a
replica's own: only the replica that sent it can see it end.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from infernet.control.bus import Judged, Verdict
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
        self.share: Callable[[Judged | Verdict], None] = self.on_fleet  # the bus's announce, once wired

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
        """One attempt's outcome, for every replica's breaker and reputation of the node."""
        now = time.monotonic()
        ttft = (timing.first_at or now) - timing.sent_at if timing.sent_at else None
        stream_s = now - timing.first_at if timing.first_at else None
        self.share(Judged(node_id, tier, str(outcome), ttft, timing.tokens, stream_s))

    def verdict(self, node_id: str, passed: bool) -> None:
        """A verification's result; a failed one opens the circuit at once."""
        self.share(Verdict(node_id, passed))

    def dropped(self, node_id: str, tier: str) -> None:
        """The node went away while it held jobs, or went silent: one failure, however many
        jobs it took down with it. (Every replica hears the drop itself.)"""
        now = time.monotonic()
        self.breaker(node_id).on_failure(now)
        self.reputation.of(node_id, tier).failure(now)

    def on_fleet(self, note: Judged | Verdict) -> None:
        now = time.monotonic()
        breaker = self.breaker(note.node_id)
        if isinstance(note, Verdict):
            self.reputation.of(note.node_id).verification(now, note.passed)
            if not note.passed:
                breaker.on_failure(now, severe=True)
        elif note.outcome == Outcome.SUCCESS:
            breaker.on_success()
            self.reputation.of(note.node_id, note.tier).completed(now, ttft_s=note.ttft_s, tokens=note.tokens, stream_s=note.stream_s)
        elif note.outcome == Outcome.FAILURE:
            breaker.on_failure(now)
            self.reputation.of(note.node_id, note.tier).failure(now)
        else:
            breaker.on_abandon()
        self.on_change(note.node_id)


__all__ = ["Breaker", "BreakerPolicy", "Health", "Reputation", "Timing", "View"]
