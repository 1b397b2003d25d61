"""The control plane's tunables, in one frozen place."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from infernet.control.health.circuit import BreakerPolicy
from infernet.control.health.verify import VerifyPolicy


@dataclass
class Settings:
    heartbeat_s: float = 10.0
    missed_heartbeats: int = 3  # a node silent this many intervals is dropped
    queue_timeout_s: float = 30.0  # a job's total deadline to start: queueing and failover
    max_attempts: int = 3  # tries before the first token, across nodes
    cancel_grace_s: float = 5.0  # wait this long for a cancelled node's final usage
    stall_timeout_s: float = 120.0  # a node silent this long on a job has lost it (a prefill on a CPU can take a while)
    max_queued: int = 1000  # jobs waiting for a slot, all keys together
    max_queued_per_key: int = 100
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    reputation_half_life_s: float = 3600.0
    verify: VerifyPolicy = field(default_factory=VerifyPolicy)
    seed: int | None = None  # routing and sampling randomness; fixed for reproducible runs
    # Browser origins allowed to call the API (CORS); none by default. `INFERNET_CORS_ORIGINS`:
    # comma-separated, or `*`.
    cors_origins: tuple[str, ...] = field(default_factory=lambda: cors_from_env(os.environ.get("INFERNET_CORS_ORIGINS", "")))


def cors_from_env(value: str) -> tuple[str, ...]:
    return tuple(o.strip().rstrip("/") for o in value.split(",") if o.strip())
