"""Every example card in the reference's tier table lands in the tier it is listed under."""

from __future__ import annotations

import pytest

from infernet.hardware.devices import Gpu
from infernet.hardware.tiers import (
    TIERS,
    choose,
    gib_floor,
    tier_for_gpu,
    tier_for_vram_mb,
)

# (vendor, name as the tool prints it, MiB as the tool reports it, arch, the reference's tier)
REFERENCE_CARDS = [
    ("nvidia", "NVIDIA H100 80GB HBM3", 81559, None, ">=48gb"),
    ("nvidia", "NVIDIA A100-SXM4-80GB", 81920, None, ">=48gb"),
    ("nvidia", "NVIDIA RTX 6000 Ada Generation", 49140, None, ">=48gb"),
    ("nvidia", "NVIDIA GeForce RTX 4090", 24564, None, ">=24gb"),
    ("nvidia", "NVIDIA GeForce RTX 3090", 24576, None, ">=24gb"),
    ("nvidia", "NVIDIA RTX A5000", 24564, None, ">=24gb"),
    ("nvidia", "NVIDIA GeForce RTX 4080", 16376, None, ">=12gb"),
    ("nvidia", "NVIDIA GeForce RTX 3080", 12288, None, ">=12gb"),
    ("nvidia", "NVIDIA RTX A2000 12GB", 12282, None, ">=12gb"),
    ("nvidia", "NVIDIA GeForce RTX 4060 Ti", 8188, None, ">=8gb"),
    ("nvidia", "NVIDIA GeForce RTX 3070", 8192, None, ">=8gb"),
    ("amd", "AMD Radeon RX 6800", 16368, "gfx1030", ">=8gb"),
]


@pytest.mark.parametrize(("vendor", "name", "mib", "arch", "tier"), REFERENCE_CARDS, ids=[c[1] for c in REFERENCE_CARDS])
def test_reference_example_cards(vendor, name, mib, arch, tier):
    assert tier_for_gpu(Gpu(vendor=vendor, name=name, vram_mb=mib, arch=arch)) == tier


@pytest.mark.parametrize(
    ("name", "mib", "tier"),
    [
        ("NVIDIA A40 (ECC on keeps 1/16)", 46068, ">=48gb"),
        ("NVIDIA L40S", 46068, ">=48gb"),
        ("NVIDIA GeForce GTX 1080 Ti (11 GB)", 11264, ">=8gb"),
        ("NVIDIA GeForce RTX 3080 (10 GB)", 10240, ">=8gb"),
        ("NVIDIA GeForce RTX 2080 Ti 22 GB mod", 22528, ">=12gb"),
        ("NVIDIA GeForce RTX 3050 (6 GB)", 6144, "cpu"),
        ("NVIDIA RTX A5000 with ECC on", 23028, ">=24gb"),
    ],
)
def test_cards_around_the_lines(name, mib, tier):
    assert tier_for_vram_mb(mib) == tier


def test_each_line_allows_seven_percent_under_the_sold_size():
    for tier, gb in ((">=48gb", 48), (">=24gb", 24), (">=12gb", 12), (">=8gb", 8)):
        floor = gib_floor(gb)
        assert tier_for_vram_mb(floor) == tier
        assert tier_for_vram_mb(floor - 1) == TIERS[TIERS.index(tier) + 1]


def test_rdna2_is_capped_but_rdna3_and_instinct_tier_by_vram():
    assert tier_for_gpu(Gpu("amd", "AMD Radeon RX 6900 XT", 16368, arch="gfx1030")) == ">=8gb"
    # rocm-smi before ROCm 6 names no gfx target: the marketing name decides.
    assert tier_for_gpu(Gpu("amd", "Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]", 16368)) == ">=8gb"
    assert tier_for_gpu(Gpu("amd", "Radeon RX 7900 XTX", 24560, arch="gfx1100")) == ">=24gb"
    assert tier_for_gpu(Gpu("amd", "AMD Instinct MI300X", 196288, arch="gfx942")) == ">=48gb"
    assert tier_for_gpu(Gpu("amd", "AMD Radeon RX 6600", 8176, arch="gfx1032")) == ">=8gb"


def test_best_single_gpu_decides_without_tensor_parallelism():
    gpus = [Gpu("nvidia", "NVIDIA GeForce RTX 3060", 12288, index=0), Gpu("nvidia", "NVIDIA GeForce RTX 4090", 24564, index=1)]
    tier, basis = choose(gpus)
    assert tier == ">=24gb"
    assert basis["mode"] == "single" and basis["gpus"] == ["nvidia:1"] and basis["vram_mb"] == 24564
    assert "best single GPU" in basis["note"]
    assert [g.tier for g in gpus] == [">=12gb", ">=24gb"]


def test_identical_gpus_add_up_with_a_tensor_parallel_engine():
    two = [Gpu("nvidia", "NVIDIA GeForce RTX 4090", 24564, index=i) for i in range(2)]
    assert choose(two)[0] == ">=24gb"
    tier, basis = choose(two, tensor_parallel=True)
    assert tier == ">=48gb"
    assert basis["mode"] == "tensor_parallel" and basis["vram_mb"] == 2 * 24564 and "add up" in basis["note"]


def test_tensor_parallel_groups_are_a_power_of_two_of_identical_cards():
    three = [Gpu("nvidia", "NVIDIA GeForce RTX 3060", 12288, index=i) for i in range(3)]
    tier, basis = choose(three, tensor_parallel=True)
    assert tier == ">=24gb" and len(basis["gpus"]) == 2
    mixed = [Gpu("nvidia", "NVIDIA GeForce RTX 3060", 12288, index=0), Gpu("nvidia", "NVIDIA GeForce RTX 4070", 12282, index=1)]
    assert choose(mixed, tensor_parallel=True)[0] == ">=12gb"  # different cards never add up


def test_mixed_vendors_best_card_wins():
    gpus = [Gpu("amd", "Radeon RX 7900 XTX", 24560, arch="gfx1100"), Gpu("nvidia", "NVIDIA GeForce RTX 4060 Ti", 8188)]
    tier, basis = choose(gpus)
    assert tier == ">=24gb" and basis["gpus"] == ["amd:0"]


def test_no_gpu_is_cpu():
    tier, basis = choose([])
    assert tier == "cpu" and basis["mode"] == "cpu" and basis["vram_mb"] == 0
