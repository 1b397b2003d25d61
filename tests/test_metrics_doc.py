"""docs/metrics.md lists every metric the control plane and the node register."""

from __future__ import annotations

from pathlib import Path

from infernet.control.metrics import Metrics
from infernet.node.daemon import NodeStatus
from infernet.node.metrics import NodeMetrics

DOC = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text()


def _names(registry) -> set[str]:
    out = set()
    for family in registry.collect():
        kind = family.type
        out.add(f"{family.name}_total" if kind == "counter" else family.name)
    return out


def test_every_metric_is_documented():
    cp = Metrics(nodes_online=lambda: 0, jobs_live=lambda: 0, slots_free=lambda: 0)
    node = NodeMetrics(NodeStatus())
    names = _names(cp.registry) | _names(node.registry)
    assert len(names) >= 16
    missing = sorted(n for n in names if f"`{n}`" not in DOC)
    assert not missing, f"docs/metrics.md does not list {missing}"
