"""Choosing a node: a pure function over snapshots, so it is easy to test and to benchmark."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

TIERS = (">=48gb", ">=24gb", ">=12gb", ">=8gb", "cpu")
TIER_RANK = {t: len(TIERS) - i for i, t in enumerate(TIERS)}  # cpu=1 ... >=48gb=5


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    node_id: str
    models: frozenset[str]
    tier: str
    capacity: int
    active: int
    tokens_per_s: float = 0.0
    latency_ms: float = 0.0
    reputation: float = 1.0


@dataclass(frozen=True, slots=True)
class RouteRequest:
    model: str
    exclude: frozenset[str] = field(default_factory=frozenset)


def eligible(nodes: Iterable[NodeSnapshot], req: RouteRequest) -> list[NodeSnapshot]:
    return [n for n in nodes if req.model in n.models and n.active < n.capacity and n.node_id not in req.exclude]


def choose(nodes: Iterable[NodeSnapshot], req: RouteRequest) -> NodeSnapshot | None:
    """The eligible node with the most free capacity; higher tier, then reputation, break ties."""
    best: NodeSnapshot | None = None
    best_key: tuple[float, int, float] | None = None
    for n in eligible(nodes, req):
        key = (1.0 - n.active / n.capacity, TIER_RANK.get(n.tier, 0), n.reputation)
        if best_key is None or key > best_key:
            best, best_key = n, key
    return best
