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
    last_seen_write_s: float = 5.0  # online nodes' last_seen reaches the store this often, in one batch
    queue_timeout_s: float = 30.0  # a job's total deadline to start: queueing and failover
    max_attempts: int = 3  # tries before the first token, across nodes
    cancel_grace_s: float = 5.0  # wait this long for a cancelled node's final usage
    stall_timeout_s: float = 120.0  # a node silent this long on a job has lost it (a prefill on a CPU can take a while)
    # A hold whose job row is missing this long after it was taken belongs to a run that died
    # between the two commits (milliseconds apart): it is released (at start, then periodically).
    orphan_hold_s: float = 60.0
    max_queued: int = 10_000  # jobs waiting for a slot, all keys together (a waiter costs a future)
    max_queued_per_key: int = 2_000  # fairness is the round-robin's; this bounds one key's memory
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    reputation_half_life_s: float = 3600.0
    verify: VerifyPolicy = field(default_factory=VerifyPolicy)
    lease_s: float = 10.0  # a replica that stops renewing its jobs' leases this long loses them
    db_pool: int = 10  # PostgreSQL connections per replica (and as many again in a burst)
    dashboard_tick_s: float = 2.0  # how often the dashboard's live feed pushes a snapshot
    seed: int | None = None  # routing and sampling randomness; fixed for reproducible runs
    # Browser origins allowed to call the API (CORS); none by default. `INFERNET_CORS_ORIGINS`:
    # comma-separated, or `*`.
    cors_origins: tuple[str, ...] = field(default_factory=lambda: cors_from_env(os.environ.get("INFERNET_CORS_ORIGINS", "")))


def cors_from_env(value: str) -> tuple[str, ...]:
    return tuple(o.strip().rstrip("/") for o in value.split(",") if o.strip())
