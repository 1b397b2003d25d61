"""A node's claims, checked: the tier it may be routed and paid as.

A node says its tier in its hello and reports its hardware beside it. Neither is taken on
trust alone:
- the **rated tier** is the lower of the claimed tier and the tier its reported GPUs reach
  by the hardware chapter's rules (`hardware/tiers.py`): a CPU machine that says `>=48gb`
  is rated `cpu`;
- the **paid tier** is the rated tier once the node is *verified* (enough completed jobs,
  its measured tokens/s within the rated tier's expected range, no failed verification;
  see `Health.verified`), and the next tier down until then.
Pure functions; the sessions rate each node when it connects, placement and billing pay it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infernet.hardware.devices import Gpu
from infernet.hardware.tiers import TIERS, rank, tier_for_gpu, tier_for_vram_mb


def _better(a: str, b: str) -> str:
    return a if rank(a) <= rank(b) else b


def _worse(a: str, b: str) -> str:
    return a if rank(a) >= rank(b) else b


def hardware_tier(hardware: Mapping[str, Any]) -> str:
    """The tier the reported GPUs reach (one card, or identical cards in a tensor-parallel
    group no larger than the cards listed)."""
    best = "cpu"
    gpus = hardware.get("gpus") if isinstance(hardware, Mapping) else None
    total = 0
    for g in gpus if isinstance(gpus, list) else []:
        try:
            gpu = Gpu(vendor=str(g["vendor"]), name=str(g.get("name") or ""), vram_mb=max(0, int(g["vram_mb"])), arch=g.get("arch"))  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        total += gpu.vram_mb
        best = _better(best, tier_for_gpu(gpu))
    basis = hardware.get("tier_basis") if isinstance(hardware, Mapping) else None
    if isinstance(basis, Mapping) and basis.get("mode") == "tensor_parallel":
        try:
            best = _better(best, tier_for_vram_mb(min(int(basis.get("vram_mb") or 0), total)))
        except (TypeError, ValueError):
            pass
    return best


def rated_tier(claimed: str, hardware: Mapping[str, Any]) -> str:
    if claimed not in TIERS:
        return "cpu"
    return _worse(claimed, hardware_tier(hardware))


def paid_tier(tier: str, verified: bool) -> str:
    """The tier whose rates the node earns: one lower until it is verified."""
    if verified or tier not in TIERS or tier == "cpu":
        return tier if tier in TIERS else "cpu"
    return TIERS[rank(tier) + 1]
