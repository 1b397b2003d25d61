"""How many jobs to run at once on an engine that does not say.

vLLM publishes no `max_num_seqs`, and a generic OpenAI-compatible server says nothing at all,
so a fixed guess is either too small (clients get 429 while the engine idles) or too big (a
node swallows a queue and serves it slowly). `AdaptiveLimit` learns it from the engine's own
latency, in the manner of Netflix's concurrency-limits (Gradient2, with Vegas's floor): while
the node runs at its limit and the time to first token stays within `tolerance` times the
engine's unloaded level (a floor that follows the fastest recent level, and creeps up slowly
should the engine itself get slower), the limit grows by about its square root; past that,
it shrinks in proportion; an engine that refuses or overloads halves it.
"""

from __future__ import annotations

import math


class AdaptiveLimit:
    def __init__(self, initial: int = 8, minimum: int = 1, maximum: int = 512, *, tolerance: float = 2.0, smoothing: float = 0.2, drift: float = 0.0005) -> None:
        self.minimum, self.maximum = minimum, maximum
        self.tolerance, self.smoothing, self.drift = tolerance, smoothing, drift
        self._value = float(initial)
        self._floor = 0.0  # the engine's unloaded time to first token
        self._short = 0.0  # the last few

    @property
    def limit(self) -> int:
        return max(self.minimum, min(self.maximum, int(self._value)))

    def sample(self, rtt_s: float, inflight: int) -> int:
        """One finished request's time to first token, and how many ran when it started."""
        self._short = rtt_s if not self._short else self._short + (rtt_s - self._short) * 0.3
        self._floor = self._short if not self._floor else min(self._floor * (1 + self.drift), self._short)
        if inflight * 2 < self._value:
            return self.limit  # far from the limit: this says nothing about where it should be
        gradient = max(0.5, min(1.0, self.tolerance * self._floor / max(self._short, 1e-9)))
        target = self._value * gradient + math.sqrt(self._value)
        self._value = max(self.minimum, min(self.maximum, (1 - self.smoothing) * self._value + self.smoothing * target))
        return self.limit

    def overloaded(self) -> int:
        """The engine refused a request for load (429, 503, out of memory): back off by half."""
        self._value = max(self.minimum, self._value / 2)
        return self.limit
