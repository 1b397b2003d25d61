"""rocm-smi / rocminfo / amd-smi through fake executables printing the real tools' output."""

from __future__ import annotations

from infernet import hardware
from infernet.hardware import amd
from tests.hardware.fakes import fixture

ROCM_SMI = "*--json*"


def _rocm(tmp_path, version: str) -> None:
    (tmp_path / "no-rocm" / ".info").mkdir(parents=True)
    (tmp_path / "no-rocm" / ".info" / "version").write_text(f"{version}-66\n")


def test_rx_6800_is_entry_tier_as_the_reference_lists_it(tools, tmp_path):
    _rocm(tmp_path, "5.7.1")
    tools.add("rocm-smi", [(ROCM_SMI, fixture("amd/rocm-smi-rx6800.json"), 0)])
    tools.add("rocminfo", [("*", fixture("amd/rocminfo-rx6800.txt"), 0)])
    report = hardware.detect()
    g = report.gpus[0]
    assert (g.vendor, g.vram_mb, g.driver) == ("amd", 16368, "6.2.4")
    assert g.name.startswith("Navi 21")
    assert report.tier == ">=8gb"
    amd_check = next(c for c in report.checks if c.name == "driver_amd")
    assert amd_check.status == "pass" and "ROCm 5.7.1" in amd_check.message


def test_rx_7900_xtx_tiers_by_vram_and_newer_key_spelling(tools, tmp_path):
    _rocm(tmp_path, "6.1.2")
    tools.add("rocm-smi", [(ROCM_SMI, fixture("amd/rocm-smi-rx7900xtx.json"), 0)])
    report = hardware.detect(run_checks=False)
    g = report.gpus[0]
    assert (g.name, g.vram_mb, g.arch, g.memory_used_mb) == ("Radeon RX 7900 XTX", 24560, "gfx1100", 1059)
    assert report.tier == ">=24gb"


def test_mi250_two_dies_listed_and_flagship(tools):
    tools.add("rocm-smi", [(ROCM_SMI, fixture("amd/rocm-smi-mi250x2.json"), 0)])
    report = hardware.detect()
    assert [g.vram_mb for g in report.gpus] == [65520, 65520]
    assert report.tier == ">=48gb"
    # No ROCm release could be read: say so rather than guess.
    assert next(c for c in report.checks if c.name == "driver_amd").status == "warn"


def test_rocminfo_alone(tools):
    tools.add("rocminfo", [("*", fixture("amd/rocminfo-rx6800.txt"), 0)])
    probe = amd.probe()
    assert probe.tool == "rocminfo" and probe.status == "found"
    g = probe.gpus[0]
    assert (g.name, g.vram_mb, g.arch, g.uuid) == ("AMD Radeon RX 6800", 16368, "gfx1030", "GPU-6200dec08b9272cf")
    assert g.tier == "cpu"  # set by choose(); the probe itself does not tier
    assert hardware.detect(run_checks=False).tier == ">=8gb"


def test_amd_smi_when_the_older_tools_are_gone(tools):
    tools.add("amd-smi", [("static*", fixture("amd/amd-smi-mi300x.json"), 0), ("version*", fixture("amd/amd-smi-version.txt"), 0)])
    report = hardware.detect()
    g = report.gpus[0]
    assert (g.name, g.vram_mb, g.arch, g.driver) == ("AMD Instinct MI300X", 196592, "gfx942", "6.8.5")
    assert report.probes[1].info["rocm_version"] == "6.2.0"
    assert report.tier == ">=48gb"


def test_driver_not_loaded(tools):
    tools.add("rocm-smi", [("*", fixture("amd/rocm-smi-no-driver.txt"), 0)])
    tools.add("rocminfo", [("*", fixture("amd/rocminfo-not-loaded.txt"), 1)])
    report = hardware.detect()
    probe = report.probes[1]
    assert probe.status == "failed" and "amdgpu kernel driver is not loaded" in probe.reason
    check = next(c for c in report.checks if c.name == "driver_amd")
    assert check.status == "fail" and "amdgpu-install" in check.fix
    assert report.tier == "cpu"


def test_old_rocm_is_flagged(tools, tmp_path):
    _rocm(tmp_path, "5.4.3")
    tools.add("rocm-smi", [(ROCM_SMI, fixture("amd/rocm-smi-rx7900xtx.json"), 0)])
    check = next(c for c in hardware.detect().checks if c.name == "driver_amd")
    assert check.status == "warn" and "5.4.3" in check.message


def test_mixed_nvidia_and_amd_in_one_box(tools):
    tools.nvidia("rtx-4060-ti-8gb.csv")
    tools.add("rocm-smi", [(ROCM_SMI, fixture("amd/rocm-smi-rx7900xtx.json"), 0)])
    report = hardware.detect()
    assert sorted(g.vendor for g in report.gpus) == ["amd", "nvidia"]
    assert report.tier == ">=24gb" and report.vendor == "amd"
    assert {c.name for c in report.checks} >= {"driver_nvidia", "driver_amd"}
