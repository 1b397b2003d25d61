"""What the relay adds per streamed request, against a direct call and a thin pass-through.

    .venv/bin/python bench/relay_overhead.py [--requests 200] [--chunks 64] [--concurrency 8]

Three paths to the same instant fake engine, measured in interleaved rounds in one run:
direct (client -> engine), thin (client -> one-hop Python proxy -> engine) and infernet
(client -> control plane -> node WebSocket -> engine). Latency is the full streamed
request; throughput is streamed requests/s at the given concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from _net import UpProcess, free_port

HERE = Path(__file__).resolve().parent
BODY = {"model": "bench-model", "messages": [{"role": "user", "content": "hi"}], "stream": True, "stream_options": {"include_usage": True}}


CHUNKS = 64


def _serve(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait(url: str) -> None:
    for _ in range(200):
        try:
            httpx.post(url + "/v1/chat/completions", json=BODY, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not start")


async def one(client: httpx.AsyncClient) -> float:
    t0 = time.perf_counter()
    text = []
    async with client.stream("POST", "/v1/chat/completions", json=BODY) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                text.append(line)
    # The relay may coalesce chunks; what matters is that every token arrived.
    assert "tok" + str(CHUNKS - 1) in "".join(text), text[-3:]
    return time.perf_counter() - t0


async def latency(client: httpx.AsyncClient, n: int) -> list[float]:
    return [await one(client) for _ in range(n)]


async def throughput(client: httpx.AsyncClient, n: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def task() -> None:
        async with sem:
            await one(client)

    t0 = time.perf_counter()
    await asyncio.gather(*(task() for _ in range(n)))
    return n / (time.perf_counter() - t0)


async def run(paths: dict[str, tuple[str, dict]], requests: int, concurrency: int, rounds: int = 4) -> dict[str, dict[str, float]]:
    lat: dict[str, list[float]] = {k: [] for k in paths}
    rps: dict[str, list[float]] = {k: [] for k in paths}
    clients = {k: httpx.AsyncClient(base_url=u, headers=h, timeout=60, limits=httpx.Limits(max_connections=concurrency * 2)) for k, (u, h) in paths.items()}
    try:
        for c in clients.values():
            await latency(c, 10)  # warm up connections and code paths
        for _ in range(rounds):
            for k, c in clients.items():
                lat[k] += await latency(c, requests // rounds)
                rps[k].append(await throughput(c, requests // rounds, concurrency))
    finally:
        for c in clients.values():
            await c.aclose()
    return {k: {"p50": statistics.median(lat[k]) * 1000, "p90": statistics.quantiles(lat[k], n=10)[8] * 1000, "rps": statistics.median(rps[k])} for k in paths}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--chunks", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--as-client", action="store_true", help="use a funded client key (metered, held, settled) instead of the admin key")
    args = ap.parse_args()
    global CHUNKS
    CHUNKS = args.chunks
    eport, pport = free_port(), free_port()
    engine = _serve(str(HERE / "fake_engine.py"), str(eport), str(args.chunks))
    proxy = _serve(str(HERE / "passthrough.py"), str(pport), f"http://127.0.0.1:{eport}")
    up = None
    try:
        _wait(f"http://127.0.0.1:{eport}")
        _wait(f"http://127.0.0.1:{pport}")
        up = UpProcess("--backend", "openai", "--backend-url", f"http://127.0.0.1:{eport}")
        key = up.key
        if args.as_client:
            admin = {"Authorization": f"Bearer {up.key}"}
            rec = httpx.post(up.url + "/api/v1/keys", json={"name": "bench"}, headers=admin).json()
            httpx.post(up.url + f"/api/v1/keys/{rec['id']}/credit", json={"amount": "1000.00"}, headers=admin).raise_for_status()
            key = rec["key"]
        paths = {
            "direct": (f"http://127.0.0.1:{eport}", {}),
            "thin proxy": (f"http://127.0.0.1:{pport}", {}),
            "infernet": (up.url, {"Authorization": f"Bearer {key}"}),
        }
        res = asyncio.run(run(paths, args.requests, args.concurrency))
    finally:
        if up:
            up.close()
        engine.terminate()
        proxy.terminate()
    d = res["direct"]
    who = "a funded client key" if args.as_client else "the operator's admin key"
    print(f"{args.chunks} chunks per streamed request, {args.requests} requests per path, concurrency {args.concurrency} for req/s; infernet with {who}")
    print(f"{'path':<12}{'p50 ms':>9}{'p90 ms':>9}{'added p50 ms':>14}{'req/s':>9}{'req/s vs direct':>17}")
    for k, r in res.items():
        print(f"{k:<12}{r['p50']:>9.2f}{r['p90']:>9.2f}{r['p50'] - d['p50']:>14.2f}{r['rps']:>9.1f}{r['rps'] / d['rps']:>17.2f}")


if __name__ == "__main__":
    main()
