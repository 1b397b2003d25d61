"""detect() and summary() on this machine (no GPU) and with fake tools."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psutil

from infernet import hardware


def test_this_machine_is_cpu_with_its_real_ram_disk_and_os(tools, tmp_path):
    report = hardware.detect(tmp_path)
    assert report.tier == "cpu" and report.gpus == []
    assert report.ram_mb == psutil.virtual_memory().total // 2**20
    usage = shutil.disk_usage(tmp_path)
    assert abs(report.disk["free_gb"] - usage.free / 1e9) < 1.0
    assert report.disk["total_gb"] == round(usage.total / 1e9, 1)
    assert report.os["name"] in Path("/etc/os-release").read_text()
    assert report.cpu["threads"] == os.cpu_count()
    assert {p.status for p in report.probes} == {"absent"}
    names = [c.name for c in report.checks]
    assert names == ["drivers", "ram", "disk_space", "disk_type", "os", "network"]


def test_to_dict_is_json_ready(tools):
    import json

    d = json.loads(json.dumps(hardware.detect().to_dict()))
    assert set(d) >= {"tier", "gpus", "ram_mb", "disk", "os", "checks", "tier_basis", "probes"}


def test_summary_for_registration_uses_real_detection(tools):
    tools.nvidia("mixed-4090-3060.csv")
    s = hardware.summary()
    assert s["tier"] == ">=24gb"
    assert [g["name"] for g in s["gpus"]] == ["NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 3060"]
    assert [g["tier"] for g in s["gpus"]] == [">=24gb", ">=12gb"]
    assert s["gpus"][0] == {"vendor": "nvidia", "name": "NVIDIA GeForce RTX 4090", "vram_mb": 24564, "driver": "560.35.03", "tier": ">=24gb"}
    assert s["ram_mb"] > 0 and s["os"]


def test_tensor_parallel_engine_on_path_adds_identical_cards(tools):
    tools.nvidia("rtx-4090-x2.csv")
    assert hardware.detect(run_checks=False).tier == ">=24gb"
    tools.add("vllm", [("*", "0.6.3\n", 0)])
    report = hardware.detect(run_checks=False)
    assert report.tensor_parallel == ["vllm"]
    assert report.tier == ">=48gb" and report.tier_basis["mode"] == "tensor_parallel"
