"""Tokens/s of the embedded model through the network vs calling the backend directly.

    .venv/bin/python bench/relay_model.py [--runs 5] [--tokens 256]

Runs alternate (direct, network, direct, ...) in one session so that machine noise hits
both sides alike; the table reports medians and the network/direct ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import httpx
from _net import UpProcess

from infernet.backends.embedded import EMBEDDED_MODEL, EmbeddedBackend

PROMPT = [{"role": "user", "content": "Write a long story about a dragon who learns to fly."}]


async def direct(backend: EmbeddedBackend, n: int) -> tuple[float, float, int]:
    body = {"model": EMBEDDED_MODEL, "messages": PROMPT, "temperature": 0, "max_tokens": n}
    t0 = time.perf_counter()
    first = None
    usage = None
    async for chunk in backend.chat(body):
        if chunk.text and first is None:
            first = time.perf_counter() - t0
        usage = chunk.usage or usage
    total = time.perf_counter() - t0
    return first or total, total, usage.completion_tokens  # type: ignore[union-attr]


def network(up: UpProcess, client: httpx.Client, n: int) -> tuple[float, float, int]:
    body = {"model": up.model, "messages": PROMPT, "temperature": 0, "max_tokens": n, "stream": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    first = None
    usage = None
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event["choices"] and event["choices"][0]["delta"].get("content") and first is None:
                first = time.perf_counter() - t0
            usage = event.get("usage") or usage
    total = time.perf_counter() - t0
    return first or total, total, usage["completion_tokens"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=256)
    args = ap.parse_args()
    backend = EmbeddedBackend()
    asyncio.run(backend.load())
    up = UpProcess()
    results: dict[str, list[tuple[float, float, int]]] = {"direct": [], "network": []}
    try:
        with httpx.Client(base_url=up.url, headers={"Authorization": f"Bearer {up.key}"}, timeout=300) as client:
            network(up, client, 8)  # warm both paths
            asyncio.run(direct(backend, 8))
            for _ in range(args.runs):
                results["direct"].append(asyncio.run(direct(backend, args.tokens)))
                results["network"].append(network(up, client, args.tokens))
    finally:
        up.close()
    rows = {}
    for name, runs in results.items():
        tps = statistics.median(tok / total for _, total, tok in runs)
        ttft = statistics.median(first for first, _, _ in runs) * 1000
        rows[name] = (tps, ttft, runs[0][2])
    print(f"{'path':<10}{'tokens':>8}{'tokens/s':>12}{'TTFT ms':>10}")
    for name, (tps, ttft, tok) in rows.items():
        print(f"{name:<10}{tok:>8}{tps:>12.1f}{ttft:>10.1f}")
    print(f"network/direct tokens/s ratio: {rows['network'][0] / rows['direct'][0]:.3f}   "
          f"TTFT added: {rows['network'][1] - rows['direct'][1]:+.1f} ms   ({args.runs} alternating runs, medians)")


if __name__ == "__main__":
    main()
