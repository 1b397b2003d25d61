"""Apple Silicon: system_profiler + sysctl, unified memory's usable share."""

from __future__ import annotations

import pytest

from infernet import hardware
from infernet.hardware import apple
from tests.hardware.fakes import fixture

GIB = 1024**3


def _mac(tools, displays: str, memsize: int, wired: int | None = None) -> None:
    tools.add("system_profiler", [("SPDisplaysDataType*", fixture(f"apple/{displays}"), 0)])
    rules = [("*hw.memsize*", f"{memsize}\n", 0), ("*machdep.cpu.brand_string*", "Apple M1 Pro\n", 0)]
    if wired is not None:
        rules.append(("*iogpu.wired_limit_mb*", f"{wired}\n", 0))
    else:
        rules.append(("*iogpu.wired_limit_mb*", "sysctl: unknown oid 'iogpu.wired_limit_mb'\n", 1))
    tools.add("sysctl", rules)


def test_m1_pro_16gb_is_entry_tier(tools):
    _mac(tools, "m1-pro-16gb.json", 16 * GIB)
    report = hardware.detect(system_name="Darwin")
    g = report.gpus[0]
    assert g.vendor == "apple" and g.unified_memory and g.name == "Apple M1 Pro (16-core GPU)"
    assert g.vram_mb == 16 * 1024 * 2 // 3 and g.arch == "metal3"
    assert report.tier == ">=8gb"
    assert next(c for c in report.checks if c.name == "driver_apple").status == "pass"
    assert report.cpu["model"] == "Apple M1 Pro"


def test_m2_ultra_usable_share_is_three_quarters(tools):
    _mac(tools, "m2-ultra-192gb.json", 192 * GIB)
    report = hardware.detect(system_name="Darwin", run_checks=False)
    assert report.gpus[0].vram_mb == 192 * 1024 * 3 // 4 and report.tier == ">=48gb"


def test_wired_limit_set_by_the_operator_wins(tools):
    _mac(tools, "m1-pro-16gb.json", 16 * GIB, wired=14336)
    assert hardware.detect(system_name="Darwin", run_checks=False).gpus[0].vram_mb == 14336


def test_intel_mac_has_no_unified_gpu(tools):
    _mac(tools, "intel-mac-radeon.json", 32 * GIB)
    probe = apple.probe()
    assert probe.status == "none" and "Intel Mac" in probe.reason


@pytest.mark.parametrize(("ram_gib", "share"), [(8, 8 * 1024 * 2 // 3), (36, 36 * 1024 * 2 // 3), (64, 48 * 1024)])
def test_usable_share(ram_gib, share):
    assert apple.usable_share_mb(ram_gib * 1024) == share


def test_apple_probe_only_runs_on_macos(tools):
    _mac(tools, "m1-pro-16gb.json", 16 * GIB)
    assert hardware.detect(system_name="Linux", run_checks=False).gpus == []
