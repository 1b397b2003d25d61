"""The last hour of the network, for the dashboard's charts: a ring of 10 s buckets in memory.

Two kinds of input, neither on the relay path:
- `job_ended`, once per ended client job (from `Metrics.job_ended`): counts by outcome,
  metered tokens, time to first token;
- `sample`, about once a second (the control plane's maintenance loop): queue depth and the
  online fleet by tier and by GPU vendor.

The network's ring is fixed (360 buckets). Each API key also gets its own job counts, kept
sparsely (a bucket only where one of its jobs ended) and pruned after the hour, so memory is
bounded by the jobs of the last hour, not by the number of keys. A client's charts show its
own jobs; the fleet and the queue are the network's for everyone, as `/api/v1/nodes` is.

Each replica records the jobs it drove: in a cluster, one replica's charts are its share.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

BUCKET_S = 10
SPAN_S = 3600
WINDOW_S = 60  # rates and averages on the charts are over the minute ending at each bucket
_N = SPAN_S // BUCKET_S
_WINDOW = WINDOW_S // BUCKET_S


@dataclass(slots=True)
class Bucket:
    t: int  # start, unix seconds, a multiple of BUCKET_S
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float = 0.0  # sum over `ttft_n` jobs
    ttft_n: int = 0
    # Gauges (network buckets only): the highest queue seen, the fleet at the last sample.
    queue: int | None = None
    tiers: dict[str, int] = field(default_factory=dict)
    vendors: dict[str, int] = field(default_factory=dict)

    def add_job(self, status: str, prompt: int, completion: int, ttft_s: float | None) -> None:
        if status == "completed":
            self.completed += 1
        elif status == "failed":
            self.failed += 1
        else:
            self.cancelled += 1
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        if ttft_s is not None:
            self.ttft_s += ttft_s
            self.ttft_n += 1


def vendor_of(hardware: Mapping[str, Any]) -> str:
    """The GPU vendor a node advertised ("nvidia", "amd", "apple"), or "cpu" without a GPU."""
    gpus = hardware.get("gpus") if isinstance(hardware, Mapping) else None
    if isinstance(gpus, list) and gpus and isinstance(gpus[0], Mapping):
        return str(gpus[0].get("vendor") or "unknown")[:32]
    return "cpu"


def tally(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


class Stats:
    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._ring: list[Bucket | None] = [None] * _N
        self._keys: dict[str, dict[int, Bucket]] = {}
        self.ended = 0  # client jobs ended since start: lets a page see that its list is stale
        self.ended_by_key: dict[str, int] = {}
        self._pruned_at = 0.0

    # -- recording ------------------------------------------------------------------------

    def _bucket(self, now: float) -> Bucket:
        t = int(now) // BUCKET_S * BUCKET_S
        i = t // BUCKET_S % _N
        b = self._ring[i]
        if b is None or b.t != t:
            b = self._ring[i] = Bucket(t)
        return b

    def job_ended(self, key_id: str, status: str, usage: Mapping[str, int] | None, ttft_s: float | None) -> None:
        now = self._clock()
        prompt = int((usage or {}).get("prompt_tokens") or 0)
        completion = int((usage or {}).get("completion_tokens") or 0)
        self._bucket(now).add_job(status, prompt, completion, ttft_s)
        t = int(now) // BUCKET_S * BUCKET_S
        mine = self._keys.setdefault(key_id, {})
        mine.setdefault(t, Bucket(t)).add_job(status, prompt, completion, ttft_s)
        self.ended += 1
        self.ended_by_key[key_id] = self.ended_by_key.get(key_id, 0) + 1
        self._prune(now)

    def sample(self, queue: int, fleet: Iterable[tuple[str, str]]) -> None:
        """The gauges now: `fleet` is (tier, vendor) for each online node."""
        b = self._bucket(self._clock())
        b.queue = max(queue, b.queue or 0)
        pairs = list(fleet)
        b.tiers = tally(tier for tier, _ in pairs)
        b.vendors = tally(vendor for _, vendor in pairs)

    def _prune(self, now: float) -> None:
        if now - self._pruned_at < WINDOW_S:  # a walk over the keys once a minute, not per job
            return
        self._pruned_at = now
        oldest = now - SPAN_S - WINDOW_S
        for key_id in [k for k, buckets in self._keys.items() if max(buckets) < oldest]:
            del self._keys[key_id]
        for buckets in self._keys.values():
            if min(buckets) < oldest:
                for t in [t for t in buckets if t < oldest]:
                    del buckets[t]

    # -- reading --------------------------------------------------------------------------

    def series(self, key_id: str | None = None, since: float | None = None) -> list[dict[str, Any]]:
        """One point per bucket from `since` (default: an hour ago) to now, oldest first.

        Job figures are over the minute ending with each bucket (`WINDOW_S`), so a chart of
        them is smooth and the newest point moves while its bucket fills. `key_id`: that
        key's jobs, with the network's gauges.
        """
        now = int(self._clock()) // BUCKET_S * BUCKET_S
        start = max(now - SPAN_S + BUCKET_S, int(since if since is not None else 0) // BUCKET_S * BUCKET_S)
        net = {b.t: b for b in self._ring if b is not None and b.t > now - SPAN_S - WINDOW_S}
        jobs = net if key_id is None else self._keys.get(key_id, {})
        points = []
        for t in range(start, now + BUCKET_S, BUCKET_S):
            window = [b for b in (jobs.get(t - i * BUCKET_S) for i in range(_WINDOW)) if b is not None]
            done = sum(b.completed for b in window)
            failed = sum(b.failed for b in window)
            ttft_n = sum(b.ttft_n for b in window)
            gauges = net.get(t)
            points.append({
                "t": t,
                "jobs_per_min": (done + failed + sum(b.cancelled for b in window)) * 60 / WINDOW_S,
                "tokens_per_s": sum(b.completion_tokens for b in window) / WINDOW_S,
                "prompt_tokens_per_s": sum(b.prompt_tokens for b in window) / WINDOW_S,
                "ttft_ms": round(sum(b.ttft_s for b in window) / ttft_n * 1000, 1) if ttft_n else None,
                "failure_rate": failed / (done + failed) if done + failed else None,
                "queue": gauges.queue if gauges is not None else None,
                "tiers": dict(gauges.tiers) if gauges is not None and gauges.queue is not None else None,
                "vendors": dict(gauges.vendors) if gauges is not None and gauges.queue is not None else None,
            })
        return points
