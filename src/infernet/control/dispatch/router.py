"""Choosing a node: pure functions over node snapshots, so they are easy to test and benchmark.

The hub keeps a `Fleet` (snapshots indexed by model, with the nodes that have a free slot in
an O(1)-sample bag) and asks `choose(fleet, request, rng)`. With more than `SCAN_BELOW` free
nodes the router samples `SAMPLES` of them ("power of d choices", d=4) and takes the best
score; below that it scores every free node. Neither path looks at busy nodes, so a decision
costs the same at 100 or 100,000 nodes. docs/routing.md explains the score.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from infernet.hardware.tiers import PRIOR_TPS, TIERS

TIER_RANK = {t: len(TIERS) - i for i, t in enumerate(TIERS)}  # cpu=1 ... >=48gb=5

# Score weights (they sum to 1) and the half-saturation points of each term.
W_FREE, W_SPEED, W_LATENCY, W_TIER, W_PRICE = 0.35, 0.20, 0.15, 0.20, 0.10
TPS_HALF = 50.0  # tokens/s at which the speed term is 0.5
LATENCY_HALF_MS = 500.0  # time to first token at which the latency term is 0.5
PRICE_HALF = 1_000_000  # micro-USDC per million tokens at which the price term is 0.5

SAMPLES = 4
SCAN_BELOW = 32
MAX_DRAWS = 16 * SAMPLES  # draws before giving up on sampling and scanning the free nodes


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    node_id: str
    models: frozenset[str]
    tier: str
    capacity: int
    active: int
    tokens_per_s: float = 0.0  # measured by the control plane; 0 = not yet
    latency_ms: float = 0.0  # measured time to first token; 0 = not yet
    reputation: float = 1.0  # 0..1, see control/reputation.py
    price: int = 0  # micro-USDC per million output tokens
    blocked_until: float = 0.0  # circuit breaker: not routable before this monotonic time
    # Per model, the features and input modalities the node advertises (ModelAd).
    features: Mapping[str, frozenset[str]] = field(default_factory=dict, hash=False, compare=False)

    @property
    def free(self) -> int:
        return self.capacity - self.active


@dataclass(frozen=True, slots=True)
class RouteRequest:
    model: str
    exclude: frozenset[str] = field(default_factory=frozenset)
    needs: frozenset[str] = field(default_factory=frozenset)  # features / modalities the node must advertise for the model
    max_price: int | None = None  # micro-USDC per million output tokens
    min_tier: str | None = None
    preferred_node: str | None = None  # taken when eligible; otherwise routing as usual
    max_latency_ms: float | None = None  # nodes not measured yet count as meeting it
    now: float = 0.0  # monotonic clock, for circuit-breaker cooldowns


def fits(n: NodeSnapshot, req: RouteRequest) -> bool:
    """The request's standing constraints, whatever the node's load or circuit."""
    return (
        req.model in n.models
        and n.node_id not in req.exclude
        and (not req.needs or req.needs <= n.features.get(req.model, frozenset()))
        and (req.min_tier is None or TIER_RANK.get(n.tier, 0) >= TIER_RANK[req.min_tier])
        and (req.max_price is None or n.price <= req.max_price)
        and (req.max_latency_ms is None or n.latency_ms <= req.max_latency_ms)
    )


def eligible(n: NodeSnapshot, req: RouteRequest) -> bool:
    return n.active < n.capacity and n.blocked_until <= req.now and fits(n, req)


def score(n: NodeSnapshot) -> float:
    """Higher is better. Reputation scales the whole score; the rest is a weighted sum of
    terms in 0..1 (free capacity, speed, latency, tier, price)."""
    free = (n.capacity - n.active) / n.capacity if n.capacity > 0 else 0.0
    tps = n.tokens_per_s or PRIOR_TPS.get(n.tier, 1.0)
    speed = tps / (tps + TPS_HALF)
    latency = LATENCY_HALF_MS / (LATENCY_HALF_MS + n.latency_ms) if n.latency_ms else 0.5
    tier = TIER_RANK.get(n.tier, 0) / len(TIERS)
    price = PRICE_HALF / (PRICE_HALF + n.price)
    return n.reputation * (W_FREE * free + W_SPEED * speed + W_LATENCY * latency + W_TIER * tier + W_PRICE * price)


class Bag:
    """A set with O(1) add, remove and uniform random pick."""

    __slots__ = ("items", "_pos")

    def __init__(self) -> None:
        self.items: list[NodeSnapshot] = []
        self._pos: dict[str, int] = {}

    def put(self, snap: NodeSnapshot) -> None:
        i = self._pos.get(snap.node_id)
        if i is None:
            self._pos[snap.node_id] = len(self.items)
            self.items.append(snap)
        else:
            self.items[i] = snap

    def discard(self, node_id: str) -> None:
        i = self._pos.pop(node_id, None)
        if i is None:
            return
        last = self.items.pop()
        if i < len(self.items):
            self.items[i] = last
            self._pos[last.node_id] = i

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[NodeSnapshot]:
        return iter(self.items)


class Fleet:
    """The latest snapshot of every online node, indexed for routing: per model, the nodes
    with a free slot, in one bag per tier (so a minimum tier narrows the draw, not the odds).

    Updating one node costs O(models it serves); the router never walks busy nodes.
    """

    def __init__(self, snapshots: Iterable[NodeSnapshot] = ()) -> None:
        self.nodes: dict[str, NodeSnapshot] = {}
        self._serving: dict[str, Bag] = {}
        self._free: dict[str, dict[str, Bag]] = {}  # model -> tier -> free nodes
        for s in snapshots:
            self.put(s)

    def put(self, snap: NodeSnapshot) -> None:
        old = self.nodes.get(snap.node_id)
        if old is not None and (old.models != snap.models or old.tier != snap.tier):
            self.remove(snap.node_id)
        self.nodes[snap.node_id] = snap
        has_room = snap.active < snap.capacity
        for m in snap.models:
            self._serving.setdefault(m, Bag()).put(snap)
            free = self._free.setdefault(m, {}).setdefault(snap.tier, Bag())
            if has_room:
                free.put(snap)
            else:
                free.discard(snap.node_id)

    def remove(self, node_id: str) -> None:
        old = self.nodes.pop(node_id, None)
        if old is None:
            return
        for m in old.models:
            self._serving[m].discard(node_id)
            self._free[m][old.tier].discard(node_id)

    def serving(self, model: str) -> Bag:
        return self._serving.get(model) or Bag()

    def free_bags(self, model: str, min_tier: str | None = None) -> list[Bag]:
        tiers = self._free.get(model)
        if not tiers:
            return []
        floor = TIER_RANK[min_tier] if min_tier is not None else 0
        return [b for t, b in tiers.items() if b.items and TIER_RANK.get(t, 0) >= floor]

    def free(self, model: str) -> list[NodeSnapshot]:
        return [n for b in self.free_bags(model) for n in b.items]

    def __len__(self) -> int:
        return len(self.nodes)


def choose(fleet: Fleet, req: RouteRequest, rng: random.Random | None = None) -> NodeSnapshot | None:
    """The node for this request, or None when no eligible node has a free slot right now."""
    if req.preferred_node is not None:
        n = fleet.nodes.get(req.preferred_node)
        if n is not None and eligible(n, req):
            return n
    bags = fleet.free_bags(req.model, req.min_tier)
    total = sum(len(b.items) for b in bags)
    if total > SCAN_BELOW:
        rng = rng or random
        best: NodeSnapshot | None = None
        best_score = -1.0
        found = 0
        for _ in range(MAX_DRAWS):
            k = int(rng.random() * total)
            for b in bags:
                if k < len(b.items):
                    n = b.items[k]
                    break
                k -= len(b.items)
            if eligible(n, req):
                s = score(n)
                if s > best_score:
                    best, best_score = n, s
                found += 1
                if found == SAMPLES:
                    break
        if best is not None:
            return best
        # Constraints rejected every draw: fall through and look at each free node.
    return best_of((n for b in bags for n in b.items), req)


def best_of(nodes: Iterable[NodeSnapshot], req: RouteRequest) -> NodeSnapshot | None:
    """The highest-scoring eligible node among `nodes` (a full scan)."""
    best: NodeSnapshot | None = None
    best_score = -1.0
    for n in nodes:
        if eligible(n, req):
            s = score(n)
            if s > best_score:
                best, best_score = n, s
    return best


def feasible(fleet: Fleet, req: RouteRequest) -> bool:
    """Whether any online node could ever take this request (waiting for a slot is worth it)."""
    return any(fits(n, req) for n in fleet.serving(req.model))
