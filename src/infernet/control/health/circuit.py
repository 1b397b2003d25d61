"""Per-node circuit breakers.

closed -> (`threshold` failures in a row) -> open for `cooldown` -> half-open: exactly one
probe job may go -> success closes it (cooldown resets), failure opens it again with the
cooldown doubled, up to `max_cooldown_s`. Time is passed in, so the state machine is pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    threshold: int = 3  # consecutive failures that open the circuit
    cooldown_s: float = 5.0  # first cooldown; doubles each time a probe fails
    max_cooldown_s: float = 300.0


@dataclass(slots=True)
class Breaker:
    policy: BreakerPolicy = field(default_factory=BreakerPolicy)
    failures: int = 0  # in a row
    opened: int = 0  # how many times it opened since it last closed
    open_until: float = 0.0
    probing: bool = False  # half-open with the one probe job in flight

    @property
    def state(self) -> str:
        if self.probing:
            return "half-open"
        return "open" if self.opened else "closed"

    def blocked_until(self, now: float) -> float:
        """What the router sees: not routable before this time (inf while a probe runs)."""
        if self.probing:
            return math.inf
        return self.open_until if self.opened else 0.0

    def on_assign(self, now: float) -> None:
        """A job went to the node; if its cooldown is over, that job is the probe."""
        if self.opened and now >= self.open_until:
            self.probing = True

    def on_abandon(self) -> None:
        """The probe ended without a verdict (the client cancelled it): the next job probes."""
        self.probing = False

    def on_success(self) -> None:
        self.failures = 0
        self.opened = 0
        self.open_until = 0.0
        self.probing = False

    def on_failure(self, now: float, *, severe: bool = False) -> None:
        """A failure or timeout; `severe` (a failed verification) opens the circuit at once."""
        self.failures += 1
        if self.probing or severe or self.failures >= self.policy.threshold:
            self.opened += 1
            if severe:
                self.opened = max(self.opened, 4)  # start at 8x the base cooldown
            cooldown = min(self.policy.cooldown_s * 2 ** (self.opened - 1), self.policy.max_cooldown_s)
            self.open_until = now + cooldown
            self.probing = False
            self.failures = 0
