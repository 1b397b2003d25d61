"""The reference's VRAM tiers, and the per-tier requirements (RAM, disk).

A tier is the VRAM one model instance can use. Three decisions (docs/hardware.md):

* Cards report less than their sold size: a "24 GB" RTX 4090 reports 24564 MiB, and a
  48 GB A40 or L40S with ECC on reports 46068 MiB (ECC keeps 1/16 of GDDR6). A card is in
  tier N GB when it reports at least 93% of N GiB: every sold size lands in its tier, while
  an 11 GB card (11264 MiB) stays below the 12 GB line.
* The reference lists the AMD RX 6800 (16 GB) under >=8gb. We read that as a statement
  about RDNA2 (gfx103x: no matrix cores, thin ROCm support), so every RDNA2 Radeon is
  capped at >=8gb; RDNA3 (RX 7900, gfx110x) and Instinct cards tier by their VRAM.
* Several GPUs: one model instance lives on one GPU unless a tensor-parallel engine (vLLM,
  SGLang) is installed; then identical cards add up, in groups of a power of two.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from infernet.hardware.devices import Gpu

TIERS = (">=48gb", ">=24gb", ">=12gb", ">=8gb", "cpu")
TIER_GB = {">=48gb": 48, ">=24gb": 24, ">=12gb": 12, ">=8gb": 8}
REPORTED_FRACTION = 0.93

# Expected tokens/s per tier, from the chapter's throughput table: reputation compares a
# node's measured speed with the low bound. The book gives no figure for cpu; 2-20 is what
# small models do there.
EXPECTED_TPS: dict[str, tuple[float, float]] = {
    ">=48gb": (50.0, 150.0),
    ">=24gb": (15.0, 80.0),
    ">=12gb": (40.0, 90.0),
    ">=8gb": (20.0, 50.0),
    "cpu": (2.0, 20.0),
}
# What the router assumes of a node it has not measured yet: the table's figures for a 7B
# model, the one size it gives for most tiers (>=24gb interpolated between its neighbours).
PRIOR_TPS = {">=48gb": 200.0, ">=24gb": 100.0, ">=12gb": 65.0, ">=8gb": 35.0, "cpu": 8.0}

# The reference's RAM table (GB) and minimum disk (GB of NVMe) per tier.
RAM_GB = {">=48gb": (64, 128), ">=24gb": (32, 64), ">=12gb": (16, 32), ">=8gb": (16, 32), "cpu": (16, 32)}
DISK_GB = {">=48gb": 1000, ">=24gb": 500, ">=12gb": 250, ">=8gb": 250, "cpu": 250}

_RDNA2 = re.compile(r"gfx103\d")
_RDNA2_NAME = re.compile(r"\bRX\s*6[5-9]\d0\b", re.I)


def rank(tier: str) -> int:
    """0 for >=48gb ... 4 for cpu: lower is better."""
    return TIERS.index(tier)


def tier_for_vram_mb(vram_mb: int) -> str:
    for tier, gb in TIER_GB.items():
        if vram_mb >= gb * 1024 * REPORTED_FRACTION:
            return tier
    return "cpu"


def gib_floor(gb: int) -> int:
    """The smallest reported MiB that still counts as `gb` GB."""
    return int(-(-gb * 1024 * REPORTED_FRACTION // 1))


def cap_for(gpu: Gpu) -> str | None:
    """The best tier this card may reach whatever its VRAM, or None."""
    if gpu.vendor == "amd" and (_RDNA2.fullmatch(gpu.arch or "") or (not gpu.arch and _RDNA2_NAME.search(gpu.name))):
        return ">=8gb"
    return None


def tier_for_gpu(gpu: Gpu) -> str:
    tier = tier_for_vram_mb(gpu.vram_mb)
    cap = cap_for(gpu)
    return cap if cap is not None and rank(tier) < rank(cap) else tier


def choose(gpus: list[Gpu], tensor_parallel: bool = False) -> tuple[str, dict[str, Any]]:
    """The node's tier and how it was reached (`basis`: which cards, how much VRAM, why)."""
    for g in gpus:
        g.tier = tier_for_gpu(g)
    if not gpus:
        return "cpu", {"mode": "cpu", "gpus": [], "vram_mb": 0, "note": "no usable GPU: the cpu tier"}
    best = min(gpus, key=lambda g: (rank(g.tier), -g.vram_mb))
    tier, basis = best.tier, {
        "mode": "single",
        "gpus": [f"{best.vendor}:{best.index}"],
        "vram_mb": best.vram_mb,
        "note": f"{best.name} ({best.vram_mb} MiB)",
    }
    if len(gpus) > 1:
        basis["note"] += "; the best single GPU decides" + ("" if tensor_parallel else " (no tensor-parallel engine: vLLM or SGLang would let identical GPUs add up)")
    if tensor_parallel:
        groups: dict[tuple[str, str, int], list[Gpu]] = defaultdict(list)
        for g in gpus:
            if g.vendor != "apple" and cap_for(g) is None:
                groups[(g.vendor, g.name, g.vram_mb)].append(g)
        for (vendor, name, vram), members in groups.items():
            n = 1 << (len(members).bit_length() - 1)  # engines split heads evenly: 2, 4, 8 cards
            if n < 2:
                continue
            t = tier_for_vram_mb(vram * n)
            if rank(t) < rank(tier) or (t == tier and vram * n > basis["vram_mb"]):
                tier, basis = t, {
                    "mode": "tensor_parallel",
                    "gpus": [f"{vendor}:{g.index}" for g in members[:n]],
                    "vram_mb": vram * n,
                    "note": f"{n} x {name} add up with tensor parallelism (vLLM/SGLang installed)",
                }
    return tier, basis
