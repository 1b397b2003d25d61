"""Prometheus metrics of one node, on a small local listener (`--metrics-port`).

The daemon hands every frame it sends, except token frames, to `observe` (see
`Node.observe`), so jobs are counted from what the node told the control plane: `Accept`
starts a job's clock, `Done` or `Fail` stops it. That is per job, never per token, and it
needs no hook inside the job-running code. Gauges read the daemon's `NodeStatus` when
scraped. Each node has its own registry, so several in one process (tests) never collide.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

from infernet.protocol.messages import Accept, Done, Fail

log = logging.getLogger("infernet.node")

# Engine time of one job: from a few milliseconds (an embedding) to minutes (a long answer).
_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class NodeMetrics:
    def __init__(self, status: Any) -> None:
        """`status`: the daemon's `NodeStatus`, read when scraped."""
        self.registry = r = CollectorRegistry()
        self.jobs = Counter("infernet_node_jobs", "Jobs this node ended, by status (completed, cancelled, failed).", ["status"], registry=r)
        self.tokens = Counter("infernet_node_tokens", "Tokens served, from the engine's own usage.", ["direction"], registry=r)
        self.errors = Counter("infernet_node_errors", "Failed jobs, by error code (backend_unavailable, over_capacity, ...).", ["code"], registry=r)
        self.engine = Histogram("infernet_node_engine_seconds", "From accepting a job until its last frame: the engine's time on it.", buckets=_SECONDS, registry=r)
        gauges: dict[str, tuple[str, Callable[[], float]]] = {
            "infernet_node_connected": ("1 while connected to the control plane.", lambda: float(status.connected)),
            "infernet_node_backend_up": ("1 while the engine answers its health check.", lambda: float(status.backend_ok)),
            "infernet_node_active_jobs": ("Jobs running on this node now.", lambda: float(status.active)),
            "infernet_node_capacity": ("Jobs this node takes at once.", lambda: float(status.capacity)),
            "infernet_node_models": ("Models this node advertises.", lambda: float(len(status.models))),
        }
        for name, (doc, read) in gauges.items():
            Gauge(name, doc, registry=r).set_function(read)
        self._started: dict[str, float] = {}
        self._server: Any = None

    def observe(self, frame: Any) -> None:
        """One frame the node sends; token frames never come here."""
        if isinstance(frame, Accept):
            self._started[frame.job_id] = time.monotonic()
            return
        if not isinstance(frame, (Done, Fail)):
            return
        started = self._started.pop(frame.job_id, None)
        if started is not None:
            self.engine.observe(time.monotonic() - started)
        usage = frame.usage
        if isinstance(frame, Done):
            self.jobs.labels("cancelled" if frame.finish_reason == "cancelled" else "completed").inc()
        else:
            self.jobs.labels("failed").inc()
            self.errors.labels(frame.code).inc()
        if usage is not None:
            if usage.prompt_tokens:
                self.tokens.labels("input").inc(usage.prompt_tokens)
            if usage.completion_tokens:
                self.tokens.labels("output").inc(usage.completion_tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def listen(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve `GET /metrics` on host:port (0: a free port) from a thread; returns the port."""
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        bound = self._server.server_address[1]
        log.info("metrics on http://%s:%d/metrics", host, bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
