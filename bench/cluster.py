"""Throughput and cost per request of one network served by 1, 2 and 3 control-plane replicas.

    python -m bench.cluster [--replicas 1,2,3] [--seconds 10] [--clients 48] [--words 16]

Each replica count gets a cluster of its own (`bench/chaos.py` `Cluster`: replica processes
started as `infernet control-plane serve` opens them, one fresh PostgreSQL database, three
node daemons given every replica's URL) in front of the same instant fake engines
(`bench/chaos_engine.py`, no delay per word), and the same load: `--clients` concurrent
clients streaming chat completions of `--words` tokens, request i at replica i mod n, for
`--seconds` after a short warm-up. Measured in that window: completed requests/s, p50/p99 of
a whole stream (request to [DONE]), and the round trips each routed request costs:
- PostgreSQL: transactions (`pg_stat_database` xact_commit + xact_rollback of the cluster's
  own database) and rows written (tup_inserted + tup_updated + tup_deleted). Statements are
  not counted: pg_stat_statements is not installed here. Background work in the window
  (lease renewals, sweeps, last-seen writes) is included: it is part of the cost.
- Redis: commands (`INFO commandstats`, every command's calls, less the INFO calls) of a
  redis-server this bench starts for itself (a shared Redis would count others' traffic).
The ratio column compares requests/s with the 1-replica cluster of the same run.

On the 2-core development machine every replica, node, engine and client shares the same two
CPUs: more replicas add no CPU, so requests/s cannot scale here, and the figure to read is
what a replica costs (round trips and CPU contention), not what it adds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

from bench.chaos import PG, Cluster, free_port, funded_keys
from bench.chaos_engine import MODEL, answer, prompt


@dataclass(frozen=True)
class Result:
    replicas: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    pg_xacts: int
    pg_rows: int
    redis_cmds: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def per(self, n: int) -> float:
        return n / self.requests if self.requests else float("nan")


@contextlib.contextmanager
def private_redis():
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("bench/cluster.py needs redis-server on PATH (it starts one of its own, so the command counts are the cluster's alone)")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


async def redis_calls(url: str) -> int:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url)
    try:
        stats = await r.info("commandstats")
    finally:
        await r.aclose()
    return sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")


async def pg_counts(cluster: Cluster) -> tuple[int, int]:
    """(transactions, rows written) of the cluster's database so far."""
    (row,) = await cluster.rows(
        "SELECT xact_commit + xact_rollback AS x, tup_inserted + tup_updated + tup_deleted AS w FROM pg_stat_database WHERE datname = current_database()"
    )
    return int(row["x"]), int(row["w"])


async def load(urls: list[str], keys: list[tuple[str, str]], clients: int, words: int, until: float, latencies: list[float]) -> int:
    """Stream requests until `until`; appends each good one's time; returns errors."""
    errors = 0
    want = answer("bench", words)
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=httpx.Timeout(60, connect=5), limits=limits) as http:
        counter = iter(range(10**9))

        async def client() -> None:
            nonlocal errors
            while time.monotonic() < until:
                i = next(counter)
                body = {"model": MODEL, "messages": [{"role": "user", "content": prompt("bench", words)}], "max_tokens": words, "stream": True}
                headers = {"Authorization": f"Bearer {keys[i % len(keys)][1]}"}
                t0 = time.perf_counter()
                text, done = "", False
                try:
                    async with http.stream("POST", urls[i % len(urls)] + "/v1/chat/completions", json=body, headers=headers) as r:
                        async for line in r.aiter_lines():
                            if line == "data: [DONE]":
                                done = True
                            elif line.startswith("data: "):
                                for choice in json.loads(line[6:]).get("choices") or []:
                                    text += choice["delta"].get("content") or ""
                except (httpx.HTTPError, ValueError):
                    done = False
                if done and text == want:
                    latencies.append((time.perf_counter() - t0) * 1000)
                else:
                    errors += 1

        await asyncio.gather(*(client() for _ in range(clients)))
    return errors


async def measure(replicas: int, redis: str, *, seconds: float, clients: int, words: int, warmup: float) -> Result:
    cluster = Cluster(nodes=3, capacity=64, word_delay_s=0.0, replicas=replicas, pg=PG, redis=redis)
    try:
        await cluster.start()
        keys = await funded_keys(cluster, 4)
        await load(cluster.urls, keys, clients, words, time.monotonic() + warmup, [])
        await asyncio.sleep(1.2)  # PostgreSQL publishes a backend's counts within a second
        (x0, w0), r0 = await pg_counts(cluster), await redis_calls(redis)
        latencies: list[float] = []
        t0 = time.monotonic()
        errors = await load(cluster.urls, keys, clients, words, t0 + seconds, latencies)
        elapsed = time.monotonic() - t0
        r1 = await redis_calls(redis)
        await asyncio.sleep(1.2)
        x1, w1 = await pg_counts(cluster)
    finally:
        await cluster.aclose()
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [float("nan")] * 99
    # The bench's own reads (two count queries, each its own transaction) are not the cluster's.
    return Result(replicas, len(latencies), errors, elapsed, q[49], q[98], x1 - x0 - 1, w1 - w0, r1 - r0)


def table(results: list[Result]) -> str:
    base = next((r for r in results if r.replicas == 1), results[0])
    head = ["replicas", "requests", "errors", "req/s", "vs 1 replica", "p50 ms", "p99 ms", "PG xacts/req", "PG rows written/req", "Redis cmds/req"]
    rows = [head] + [
        [str(r.replicas), str(r.requests), str(r.errors), f"{r.rps:.0f}", f"{r.rps / base.rps:.2f}x", f"{r.p50_ms:.0f}", f"{r.p99_ms:.0f}",
         f"{r.per(r.pg_xacts):.2f}", f"{r.per(r.pg_rows):.2f}", f"{r.per(r.redis_cmds):.2f}"]
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicas", default="1,2,3", help="comma-separated replica counts (1 is always measured: the baseline)")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per replica count")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--clients", type=int, default=48, help="concurrent streaming clients")
    ap.add_argument("--words", type=int, default=16, help="tokens per answer")
    a = ap.parse_args()
    try:
        counts = sorted({1, *(int(n) for n in a.replicas.split(","))})
    except ValueError:
        ap.error(f"--replicas {a.replicas!r}: give whole numbers, e.g. 1,2,3")
    if min(counts) < 1 or a.seconds <= 0 or a.clients < 1 or a.words < 1:
        ap.error("replica counts, --seconds, --clients and --words must be positive")
    results = []
    with private_redis() as redis:
        for n in counts:
            try:
                results.append(asyncio.run(measure(n, redis, seconds=a.seconds, clients=a.clients, words=a.words, warmup=a.warmup)))
            except (OSError, RuntimeError, TimeoutError) as exc:
                sys.exit(f"{n} replicas: {type(exc).__name__}: {exc}")
            print(table(results).splitlines()[-1], flush=True)
    print()
    print(f"python -m bench.cluster --replicas {','.join(map(str, counts))} --seconds {a.seconds:g} --clients {a.clients} --words {a.words}")
    print(table(results))


if __name__ == "__main__":
    main()
