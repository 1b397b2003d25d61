"""Router decision time at 100 / 1,000 / 10,000 / 100,000 nodes, against a naive full scan.

    PYTHONPATH=src python bench/router.py

The fleet: nodes spread over the five tiers and three models, each with 1-8 slots, about
half of the slots busy, measured speed/latency/reputation/price all varied. `choose` is the
router placement uses (indexed, power-of-4 choices); the baseline scores every node, as the
first router did. Both run in the same process on the same fleet and the same requests.
"""

from __future__ import annotations

import random
import statistics
import time

from rich.console import Console
from rich.table import Table

from infernet.control.dispatch.router import (
    TIERS,
    Fleet,
    NodeSnapshot,
    RouteRequest,
    best_of,
    choose,
)

MODELS = ("qwen2.5:7b", "llama3.1:8b", "qwen2.5:72b")


def fleet_of(n: int, rng: random.Random) -> list[NodeSnapshot]:
    out = []
    for i in range(n):
        cap = rng.choice((1, 2, 4, 8))
        out.append(
            NodeSnapshot(
                node_id=f"{i:064x}",
                models=frozenset(rng.sample(MODELS, rng.choice((1, 2)))),
                tier=rng.choice(TIERS),
                capacity=cap,
                active=rng.randint(0, cap) if rng.random() < 0.5 else 0,
                tokens_per_s=rng.uniform(5, 150),
                latency_ms=rng.uniform(80, 2000),
                reputation=rng.uniform(0.5, 1.0),
                price=rng.randint(100_000, 3_000_000),
            )
        )
    return out


def per_call_us(fn, budget_s: float = 0.15) -> float:
    """Median over 5 batches of the mean time per call, in microseconds; each batch runs for
    about `budget_s`."""
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < budget_s / 5 or calls < 3:
        fn()
        calls += 1
    calls = max(3, calls * 5)
    batches = []
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        batches.append((time.perf_counter_ns() - t0) / calls / 1000)
    return statistics.median(batches)


def main() -> None:
    rng = random.Random(42)
    table = Table(title="router decision time (µs per decision, median of 5 batches)")
    for col in ("nodes", "choose", "choose (min_tier >=48gb, max_price)", "index update", "naive full scan", "naive / choose"):
        table.add_column(col, justify="right")
    plain = RouteRequest("qwen2.5:7b")
    strict = RouteRequest("qwen2.5:7b", min_tier=">=48gb", max_price=1_500_000)
    for n in (100, 1_000, 10_000, 100_000):
        nodes = fleet_of(n, rng)
        fleet = Fleet(nodes)
        r = random.Random(1)
        fast = per_call_us(lambda: choose(fleet, plain, r))
        constrained = per_call_us(lambda: choose(fleet, strict, r))
        busy = [s for s in nodes if s.active < s.capacity]
        flip = iter(range(10**9))

        def update() -> None:  # what placement does when a job starts or ends on a node
            s = busy[next(flip) % len(busy)]
            fleet.put(s)

        upd = per_call_us(update)
        naive = per_call_us(lambda: best_of(nodes, plain))
        assert choose(fleet, plain, r) is not None
        table.add_row(f"{n:,}", f"{fast:.1f}", f"{constrained:.1f}", f"{upd:.1f}", f"{naive:,.0f}", f"{naive / fast:,.0f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
