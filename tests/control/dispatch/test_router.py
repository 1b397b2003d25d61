"""The router: eligibility, the score, and the sampled path at fleet scale."""

from __future__ import annotations

import math
import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from infernet.control.dispatch.router import (
    TIERS,
    Fleet,
    NodeSnapshot,
    RouteRequest,
    best_of,
    choose,
    eligible,
    feasible,
    score,
)


def snap(i: int | str, tier: str = "cpu", *, cap: int = 4, active: int = 0, models=("m",), **kw) -> NodeSnapshot:
    return NodeSnapshot(node_id=str(i), models=frozenset(models), tier=tier, capacity=cap, active=active, **kw)


def test_each_constraint_excludes_what_it_should():
    req = RouteRequest("m")
    assert eligible(snap(1), req)
    assert not eligible(snap(1, models=("other",)), req)
    assert not eligible(snap(1, active=4), req)
    assert not eligible(snap(1), RouteRequest("m", exclude=frozenset({"1"})))
    assert not eligible(snap(1, "cpu"), RouteRequest("m", min_tier=">=8gb"))
    assert eligible(snap(1, ">=24gb"), RouteRequest("m", min_tier=">=8gb"))
    assert not eligible(snap(1, price=500), RouteRequest("m", max_price=499))
    assert eligible(snap(1, price=500), RouteRequest("m", max_price=500))
    assert not eligible(snap(1, latency_ms=900), RouteRequest("m", max_latency_ms=800))
    assert eligible(snap(1, latency_ms=0), RouteRequest("m", max_latency_ms=800))  # not measured yet
    assert not eligible(snap(1, blocked_until=10.0), RouteRequest("m", now=9.0))
    assert eligible(snap(1, blocked_until=10.0), RouteRequest("m", now=10.0))
    assert not eligible(snap(1, blocked_until=math.inf), RouteRequest("m", now=1e12))


def test_score_prefers_free_fast_high_tier_reputable_cheap():
    base = snap(1, ">=12gb")
    assert score(snap(1, ">=12gb", active=0)) > score(snap(1, ">=12gb", active=3))
    assert score(snap(1, ">=12gb", tokens_per_s=120)) > score(snap(1, ">=12gb", tokens_per_s=10))
    assert score(snap(1, ">=12gb", latency_ms=100)) > score(snap(1, ">=12gb", latency_ms=3000))
    assert score(snap(1, ">=48gb")) > score(base) > score(snap(1, "cpu"))
    assert score(snap(1, ">=12gb", reputation=0.9)) > score(snap(1, ">=12gb", reputation=0.1))
    assert score(snap(1, ">=12gb", price=100)) > score(snap(1, ">=12gb", price=5_000_000))


def test_the_worked_example_in_the_docs():
    a = snap("A", ">=48gb", cap=4, active=3, tokens_per_s=120, latency_ms=300, reputation=0.95, price=2_000_000)
    b = snap("B", ">=24gb", cap=2, active=0, tokens_per_s=45, latency_ms=450, reputation=0.9, price=800_000)
    c = snap("C", "cpu", cap=1, active=0, tokens_per_s=8, latency_ms=1500, reputation=1.0, price=100_000)
    assert [round(score(n), 3) for n in (a, b, c)] == [0.528, 0.665, 0.546]
    assert choose(Fleet([a, b, c]), RouteRequest("m")).node_id == "B"
    assert choose(Fleet([a, b, c]), RouteRequest("m", min_tier=">=48gb")).node_id == "A"
    assert choose(Fleet([a, b, c]), RouteRequest("m", max_price=500_000)).node_id == "C"


def test_preferred_node_wins_when_eligible_else_normal_routing():
    fleet = Fleet([snap(1, ">=48gb"), snap(2, "cpu"), snap(3, "cpu", active=4)])
    assert choose(fleet, RouteRequest("m", preferred_node="2")).node_id == "2"
    assert choose(fleet, RouteRequest("m", preferred_node="3")).node_id == "1"
    assert choose(fleet, RouteRequest("m", preferred_node="nope")).node_id == "1"


def test_fleet_index_tracks_free_nodes_and_removals():
    fleet = Fleet([snap(i) for i in range(5)])
    assert len(fleet.free("m")) == 5
    fleet.put(snap(2, active=4))
    assert len(fleet.free("m")) == 4 and len(fleet.serving("m")) == 5
    fleet.put(snap(2, active=1))
    assert len(fleet.free("m")) == 5
    fleet.remove("0")
    assert {n.node_id for n in fleet.free("m")} == {"1", "2", "3", "4"}
    fleet.put(snap(4, ">=48gb"))  # a node's tier changes: it moves bags
    assert [n.tier for n in fleet.free("m") if n.node_id == "4"] == [">=48gb"] and len(fleet.free("m")) == 4
    fleet.put(snap(3, models=("x",)))
    assert "3" not in {n.node_id for n in fleet.serving("m")} and len(fleet.free("x")) == 1
    assert choose(fleet, RouteRequest("nothing")) is None
    assert not feasible(fleet, RouteRequest("m", max_price=-1))
    assert feasible(fleet, RouteRequest("m", min_tier=">=48gb"))
    assert feasible(fleet, RouteRequest("m"))


def test_large_fleet_sampling_finds_a_rare_eligible_node():
    nodes = [snap(i, "cpu") for i in range(5000)] + [snap("gpu", ">=48gb")]
    fleet = Fleet(nodes)
    pick = choose(fleet, RouteRequest("m", min_tier=">=48gb"), random.Random(1))
    assert pick is not None and pick.node_id == "gpu"


def test_large_fleet_spreads_load_and_favours_higher_tiers():
    rng = random.Random(3)
    nodes = [snap(i, TIERS[i % 5]) for i in range(1000)]
    fleet = Fleet(nodes)
    wins = Counter(choose(fleet, RouteRequest("m"), rng).tier for _ in range(5000))
    assert wins[">=48gb"] > wins[">=24gb"] > wins[">=12gb"] > wins[">=8gb"] > wins["cpu"]
    picked = Counter(choose(fleet, RouteRequest("m"), rng).node_id for _ in range(2000))
    assert len(picked) > 100  # sampling spreads; it does not herd onto one node


node_st = st.builds(
    NodeSnapshot,
    node_id=st.text("abcdef", min_size=1, max_size=3),
    models=st.sampled_from([frozenset({"m"}), frozenset({"x"}), frozenset({"m", "x"})]),
    tier=st.sampled_from(TIERS),
    capacity=st.integers(1, 4),
    active=st.integers(0, 4),
    tokens_per_s=st.floats(0, 300),
    latency_ms=st.floats(0, 5000),
    reputation=st.floats(0, 1),
    price=st.integers(0, 5_000_000),
    blocked_until=st.sampled_from([0.0, 5.0, math.inf]),
)
req_st = st.builds(
    RouteRequest,
    model=st.sampled_from(["m", "x"]),
    max_price=st.none() | st.integers(0, 5_000_000),
    min_tier=st.none() | st.sampled_from(TIERS),
    max_latency_ms=st.none() | st.floats(1, 5000),
    now=st.sampled_from([0.0, 10.0]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(node_st, max_size=80), req_st, st.integers(0, 2**32))
def test_choose_returns_an_eligible_node_whenever_one_exists(nodes, req, seed):
    fleet = Fleet(nodes)
    current = list(fleet.nodes.values())  # the last snapshot per id wins
    pick = choose(fleet, req, random.Random(seed))
    if any(eligible(n, req) for n in current):
        assert pick is not None and eligible(pick, req)
    else:
        assert pick is None
    scanned = sum(len(b) for b in fleet.free_bags(req.model, req.min_tier)) <= 32
    if scanned and pick is not None and req.preferred_node is None:
        assert score(pick) == score(best_of(current, req))
