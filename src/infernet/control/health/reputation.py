"""Reputation, measured: what a node did, not what it claims.

Per node the control plane keeps exponentially decaying counts (half-life `half_life_s`) of
completed and failed jobs and of passed and failed verifications, plus moving averages of
time to first token and of tokens/s, both measured here, never taken from the node's word.

    reputation = completion * speed * latency * verification        (each in 0..1)

    completion   = (ok + 4) / (ok + failed + 5)           a new node starts at 0.8
    speed        = measured tokens/s / the tier's expected low bound, clamped to 0.25..1
    latency      = 1 up to 2 s to first token, then 2 s / ttft, clamped to 0.25..1
    verification = (passed + 1) / (passed + 1 + 10 * failed)   one wrong answer: ~0.09

Everything decays, so a node that was bad an hour ago and good since recovers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infernet.hardware.tiers import EXPECTED_TPS

PRIOR_OK, PRIOR_TOTAL = 4.0, 5.0
FAKE_PENALTY = 10.0
SLOW_TTFT_MS = 2000.0
EWMA = 0.2


@dataclass(slots=True)
class Record:
    tier: str
    half_life_s: float
    stamp: float = 0.0
    ok: float = 0.0
    failed: float = 0.0
    verified: float = 0.0
    faked: float = 0.0
    ttft_ms: float = 0.0
    tokens_per_s: float = 0.0
    measured: int = 0  # completed jobs whose speed was measured, ever (never decays)

    def _decay(self, now: float) -> None:
        if self.stamp and now > self.stamp:
            f = 0.5 ** ((now - self.stamp) / self.half_life_s)
            self.ok *= f
            self.failed *= f
            self.verified *= f
            self.faked *= f
        self.stamp = max(self.stamp, now)

    def completed(self, now: float, *, ttft_s: float | None, tokens: int, stream_s: float | None) -> None:
        self._decay(now)
        self.ok += 1
        if ttft_s is not None:
            ms = ttft_s * 1000
            self.ttft_ms = ms if not self.ttft_ms else (1 - EWMA) * self.ttft_ms + EWMA * ms
        if stream_s is not None and tokens >= 2:
            rate = (tokens - 1) / max(stream_s, 1e-3)  # tokens after the first, over the time they took
            self.tokens_per_s = rate if not self.tokens_per_s else (1 - EWMA) * self.tokens_per_s + EWMA * rate
            self.measured += 1

    def failure(self, now: float) -> None:
        self._decay(now)
        self.failed += 1

    def verification(self, now: float, passed: bool) -> None:
        self._decay(now)
        if passed:
            self.verified += 1
        else:
            self.faked += 1

    def score(self, now: float) -> float:
        self._decay(now)
        completion = (self.ok + PRIOR_OK) / (self.ok + self.failed + PRIOR_TOTAL)
        speed = 1.0
        if self.tokens_per_s:
            low = EXPECTED_TPS.get(self.tier, EXPECTED_TPS["cpu"])[0]
            speed = min(1.0, max(0.25, self.tokens_per_s / low))
        latency = 1.0
        if self.ttft_ms > SLOW_TTFT_MS:
            latency = max(0.25, SLOW_TTFT_MS / self.ttft_ms)
        verification = (self.verified + 1) / (self.verified + 1 + FAKE_PENALTY * self.faked)
        return completion * speed * latency * verification


@dataclass
class Reputation:
    """Every node's record, kept across reconnects (keyed by node id)."""

    half_life_s: float = 3600.0
    records: dict[str, Record] = field(default_factory=dict)

    def of(self, node_id: str, tier: str | None = None) -> Record:
        rec = self.records.get(node_id)
        if rec is None:
            rec = self.records[node_id] = Record(tier=tier or "cpu", half_life_s=self.half_life_s)
        elif tier is not None:
            rec.tier = tier
        return rec
