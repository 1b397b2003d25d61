"""Prometheus metrics for operators: `GET /metrics` (admin key).

Recorded once per job when it ends, never per token, so the relay path pays nothing; the
same call feeds the dashboard's last hour (`control/stats.py`). Each
control plane has its own registry, so several in one process (tests) never collide. The
gauges read callables, so this module knows nothing of who holds nodes or jobs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from infernet.control.stats import Stats

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_OVERHEAD = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class EndedJob(Protocol):
    key_id: str
    purpose: str
    kind: str
    model: str
    created: float
    sent_at: float
    first_at: float

    @property
    def status(self) -> str: ...

    @property
    def usage(self) -> dict[str, int] | None: ...


class Metrics:
    def __init__(self, *, nodes_online: Callable[[], float], jobs_live: Callable[[], float], slots_free: Callable[[], float], stats: Stats | None = None) -> None:
        self.stats = stats
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs = Counter("infernet_jobs", "Jobs that ended, by kind, status and model.", ["kind", "status", "model"], registry=r)
        self.tokens = Counter("infernet_tokens", "Tokens metered from the engines' own usage.", ["direction", "model"], registry=r)
        self.ttft = Histogram("infernet_time_to_first_token_seconds", "From the job frame to the node until its first token.", ["model"], buckets=_LATENCY, registry=r)
        self.duration = Histogram("infernet_job_seconds", "From submission until the job ended.", ["kind", "model"], buckets=_LATENCY, registry=r)
        self.overheads = Histogram(
            "infernet_overhead_seconds", "Time an answered request spent in infernet outside the engine: from its arrival until its answer was sent, less the engine's time as its node measured it.",
            ["kind"], buckets=_OVERHEAD, registry=r,
        )
        Gauge("infernet_nodes_online", "Nodes connected to this control plane.", registry=r).set_function(nodes_online)
        Gauge("infernet_jobs_live", "Jobs queued or running on this control plane.", registry=r).set_function(jobs_live)
        Gauge("infernet_slots_free", "Free job slots across online nodes.", registry=r).set_function(slots_free)

    def job_ended(self, job: EndedJob) -> None:
        if job.purpose != "client":
            return
        self.jobs.labels(job.kind, str(job.status), job.model).inc()
        usage = job.usage or {}
        if usage.get("prompt_tokens"):
            self.tokens.labels("input", job.model).inc(usage["prompt_tokens"])
        if usage.get("completion_tokens"):
            self.tokens.labels("output", job.model).inc(usage["completion_tokens"])
        ttft = max(0.0, job.first_at - job.sent_at) if job.first_at and job.sent_at else None
        if ttft is not None:
            self.ttft.labels(job.model).observe(ttft)
        self.duration.labels(job.kind, job.model).observe(max(0.0, time.time() - job.created))
        if self.stats is not None:
            self.stats.job_ended(job.key_id, str(job.status), usage, ttft)

    def overhead(self, kind: str, seconds: float) -> None:
        self.overheads.labels(kind).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
