"""nvidia-smi through fake executables printing the real tool's output."""

from __future__ import annotations

import pytest

from infernet import hardware
from infernet.hardware import _run, nvidia
from tests.hardware.fakes import fixture

CARDS = [
    ("h100-80gb-x4.csv", "NVIDIA H100 80GB HBM3", 81559, "9.0", ">=48gb"),
    ("a100-sxm4-80gb.csv", "NVIDIA A100-SXM4-80GB", 81920, "8.0", ">=48gb"),
    ("rtx-6000-ada.csv", "NVIDIA RTX 6000 Ada Generation", 49140, "8.9", ">=48gb"),
    ("a40-ecc.csv", "NVIDIA A40", 46068, "8.6", ">=48gb"),
    ("rtx-4090.csv", "NVIDIA GeForce RTX 4090", 24564, "8.9", ">=24gb"),
    ("rtx-3090.csv", "NVIDIA GeForce RTX 3090", 24576, "8.6", ">=24gb"),
    ("rtx-a5000.csv", "NVIDIA RTX A5000", 24564, "8.6", ">=24gb"),
    ("rtx-4080.csv", "NVIDIA GeForce RTX 4080", 16376, "8.9", ">=12gb"),
    ("rtx-3080-12gb.csv", "NVIDIA GeForce RTX 3080", 12288, "8.6", ">=12gb"),
    ("rtx-a2000-12gb.csv", "NVIDIA RTX A2000 12GB", 12282, "8.6", ">=12gb"),
    ("rtx-3080-10gb.csv", "NVIDIA GeForce RTX 3080", 10240, "8.6", ">=8gb"),
    ("gtx-1080-ti.csv", "NVIDIA GeForce GTX 1080 Ti", 11264, "6.1", ">=8gb"),
    ("rtx-4060-ti-8gb.csv", "NVIDIA GeForce RTX 4060 Ti", 8188, "8.9", ">=8gb"),
]


@pytest.mark.parametrize(("csv", "name", "mib", "cc", "tier"), CARDS, ids=[c[0] for c in CARDS])
def test_each_card_through_the_fake_tool(tools, csv, name, mib, cc, tier):
    tools.nvidia(csv, cuda="12.4")
    report = hardware.detect(run_checks=False)
    assert report.tier == tier
    g = report.gpus[0]
    assert (g.vendor, g.name, g.vram_mb, g.compute_capability) == ("nvidia", name, mib, cc)
    assert g.uuid and g.uuid.startswith("GPU-") and g.driver
    assert report.probes[0].info["cuda_version"] == "12.4"


def test_four_h100s_are_all_listed(tools):
    tools.nvidia("h100-80gb-x4.csv")
    probe = nvidia.probe()
    assert probe.status == "found" and [g.index for g in probe.gpus] == [0, 1, 2, 3]
    assert len({g.uuid for g in probe.gpus}) == 4


def test_parse_xml_reads_framebuffer_not_bar1():
    gpus, info = nvidia.parse_xml(fixture("nvidia/rtx-4090.xml").read_text())
    assert info == {"driver_version": "550.54.15", "cuda_version": "12.4"}
    assert gpus[0].vram_mb == 24564 and gpus[0].memory_used_mb == 312
    assert gpus[0].uuid == "GPU-6e1c9f3a-2b8d-4a7e-9c5f-3d1e7b2a8c46"


def test_driver_470_without_compute_cap_retries_the_short_query(tools):
    tools.add(
        "nvidia-smi",
        [
            ("*-q\\ -x*", fixture("nvidia/rtx-3070-470.xml"), 0),
            ("*compute_cap*", fixture("nvidia/compute-cap-unsupported.txt"), 2),
            ("*--query-gpu=*", fixture("nvidia/rtx-3070-470.csv"), 0),
        ],
    )
    probe = nvidia.probe()
    assert probe.status == "found"
    g = probe.gpus[0]
    assert (g.name, g.vram_mb, g.compute_capability, g.tier) == ("NVIDIA GeForce RTX 3070", 8192, None, "cpu")
    assert probe.info["cuda_version"] == "11.4"
    assert hardware.detect(run_checks=False).tier == ">=8gb"


@pytest.mark.parametrize(
    ("fixture_name", "rc", "status", "says"),
    [
        ("driver-not-loaded.txt", 9, "failed", "NVIDIA driver is not loaded"),
        ("version-mismatch.txt", 18, "failed", "a driver upgrade without a reboot"),
        ("no-devices.txt", 6, "none", "found no NVIDIA GPU"),
    ],
)
def test_tool_present_but_failing(tools, fixture_name, rc, status, says):
    tools.add("nvidia-smi", [("*", fixture(f"nvidia/{fixture_name}"), rc)])
    probe = nvidia.probe()
    assert probe.status == status and says in probe.reason and probe.gpus == []
    report = hardware.detect()
    assert report.tier == "cpu"
    drivers = [c for c in report.checks if c.name.startswith("driver")]
    if status == "failed":
        assert drivers[0].status == "fail" and says in drivers[0].message and drivers[0].fix


def test_a_hung_tool_times_out(tools, monkeypatch):
    monkeypatch.setattr(_run, "TIMEOUT_S", 0.3)
    tools.add("nvidia-smi", [("*", "never printed", 0)], sleep=5)
    probe = nvidia.probe()
    assert probe.status == "failed" and "time limit" in probe.reason


def test_garbage_output_is_not_a_crash(tools):
    tools.add("nvidia-smi", [("*-q\\ -x*", "<not xml", 0), ("*", "something else entirely\n", 0)])
    probe = nvidia.probe()
    assert probe.status == "none" and probe.gpus == []


def test_absent_tool(tools):
    probe = nvidia.probe()
    assert probe.status == "absent" and "not found on PATH" in probe.reason


def test_unified_memory_part_reports_no_memory():
    gpus = nvidia.parse_csv("0, NVIDIA GB10, [N/A], [N/A], 580.95.05, GPU-0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b, 12.1\n")
    assert gpus[0].vram_mb == 0 and gpus[0].memory_used_mb is None and gpus[0].compute_capability == "12.1"
