"""Requirement checks: pass / warn / fail with a reason and a fix."""

from __future__ import annotations

import pytest

from infernet.hardware import checks
from infernet.hardware.devices import Gpu, Probe


@pytest.mark.parametrize(
    ("tier", "ram_gib", "status"),
    [(">=48gb", 128, "pass"), (">=48gb", 64, "warn"), (">=48gb", 48, "fail"), (">=24gb", 31.3, "warn"), (">=24gb", 24, "fail"), ("cpu", 15.5, "warn"), ("cpu", 8, "fail"), (">=12gb", 32, "pass")],
)
def test_ram_table(tier, ram_gib, status):
    c = checks.check_ram(tier, int(ram_gib * 1024))
    assert c.status == status
    if status != "pass":
        assert c.fix


def _disk(free, total, kind="nvme"):
    return {"path": "/models", "free_gb": free, "total_gb": total, "kind": kind, "device": "nvme0n1"}


def test_disk_space_for_the_tiers_typical_model():
    assert checks.check_disk_space(">=48gb", _disk(900, 1000)).status == "pass"
    c = checks.check_disk_space(">=48gb", _disk(100, 1000))
    assert c.status == "warn" and "Q4 (40 GB)" in c.message and "FP16 (140 GB)" in c.message
    c = checks.check_disk_space(">=48gb", _disk(30, 1000))
    assert c.status == "fail" and "40 GB even at Q4" in c.message
    c = checks.check_disk_space(">=24gb", _disk(300, 450))
    assert c.status == "warn" and "recommends 500 GB" in c.message
    assert checks.check_disk_space(">=24gb", _disk(400, 490)).status == "pass"  # a 500 GB disk once formatted
    assert c.status == "warn" and "recommends 500 GB" in c.message


def test_disk_space_for_chosen_models():
    models = [("llama-3.1-70b-instruct", 141.2, 42.8), ("qwen2.5-7b-instruct", 15.2, 4.6)]
    c = checks.check_disk_space(">=48gb", _disk(120, 2000), models)
    assert c.status == "warn" and "47 GB" in c.message


def test_storage_table_lookup():
    assert checks.storage_gb(7) == (14, 4)
    assert checks.storage_gb(70.6) == (140, 40)
    assert checks.storage_gb(1.5) == (6, 2)


@pytest.mark.parametrize(("kind", "status"), [("nvme", "pass"), ("ssd", "warn"), ("hdd", "warn"), ("virtual", "warn"), ("unknown", "warn")])
def test_disk_type(kind, status):
    c = checks.check_disk_type(_disk(100, 500, kind))
    assert c.status == status
    if kind == "hdd":
        assert "spinning" in c.message and "NVMe" in c.fix


def _os(**kw):
    base = {"system": "Linux", "id": "ubuntu", "version": "24.04", "name": "Ubuntu 24.04 LTS", "id_like": ["debian"], "wsl": None, "arch": "x86_64"}
    return base | kw


@pytest.mark.parametrize(
    ("info", "status", "says"),
    [
        (_os(), "pass", "recommended"),
        (_os(version="22.04", name="Ubuntu 22.04.4 LTS"), "pass", "recommended"),
        (_os(version="20.04", name="Ubuntu 20.04.6 LTS"), "warn", "not a tested LTS"),
        (_os(wsl=2), "warn", "WSL2"),
        (_os(wsl=1), "fail", "WSL1"),
        (_os(id="debian", version="12", name="Debian GNU/Linux 12 (bookworm)", id_like=[]), "pass", "supported"),
        (_os(id="debian", version="10", name="Debian GNU/Linux 10 (buster)", id_like=[]), "warn", "older than"),
        (_os(id="fedora", version="40", name="Fedora Linux 40", id_like=[]), "pass", "supported"),
        (_os(id="fedora", version="37", name="Fedora Linux 37", id_like=[]), "warn", "older than"),
        (_os(id="centos", version="9", name="CentOS Stream 9", id_like=["rhel", "fedora"]), "pass", "supported"),
        (_os(id="linuxmint", version="21.3", name="Linux Mint 21.3", id_like=["ubuntu", "debian"]), "pass", "Debian-based"),
        (_os(id="arch", version="", name="Arch Linux", id_like=[]), "warn", "not a tested"),
        (_os(system="Windows", id="windows", name="Windows 11"), "fail", "not supported"),
        (_os(system="Darwin", id="macos", name="macOS 14.5", arch="arm64"), "pass", "Apple Silicon"),
        (_os(system="Darwin", id="macos", name="macOS 13.6", arch="x86_64"), "warn", "Intel Mac"),
    ],
)
def test_os(info, status, says):
    c = checks.check_os(info)
    assert c.status == status and says in c.message
    if status != "pass":
        assert c.fix


def _nv(cuda):
    return Probe("nvidia", "nvidia-smi", "found", "", [Gpu("nvidia", "x", 24564)], {"cuda_version": cuda, "driver_version": "550.54.15"})


def test_cuda_versions():
    assert checks.check_drivers([_nv("12.4")], [], [])[0].status == "pass"
    assert checks.check_drivers([_nv("12.1")], [], [])[0].status == "pass"
    old = checks.check_drivers([_nv("11.8")], [], [])[0]
    assert old.status == "warn" and "12.1+" in old.message and "Ollama works" in old.message
    assert checks.check_drivers([_nv(None)], [], [])[0].status == "warn"


def test_gpu_on_the_bus_without_driver_is_named():
    pci = [{"slot": "0000:01:00.0", "vendor": "nvidia", "device": "0x2684", "driver": ""}]
    absent = Probe("nvidia", "nvidia-smi", "absent", "nvidia-smi not found on PATH")
    c = checks.check_drivers([absent], [], pci)[0]
    assert c.status == "fail" and "0000:01:00.0" in c.message and "driver" in c.fix


def test_no_gpu_needs_no_driver():
    c = checks.check_drivers([Probe("nvidia", "nvidia-smi", "absent", "")], [], [])
    assert [x.status for x in c] == ["pass"] and "cpu tier" in c[0].message


@pytest.mark.parametrize(
    ("tier", "link", "status", "says"),
    [
        (">=24gb", {"latency_ms": 12.0, "jitter_ms": 1.0, "upload_mbps": 940.0, "rdns": "node7.fra1.example-dc.net"}, "pass", "latency 12 ms"),
        (">=24gb", {"latency_ms": 180.0, "jitter_ms": 2.0, "upload_mbps": 500.0, "rdns": None}, "warn", "latency 180 ms"),
        ("cpu", {"latency_ms": 20.0, "jitter_ms": 2.0, "upload_mbps": 40.0, "rdns": None}, "warn", "upload 40 Mbps"),
        (">=48gb", {"latency_ms": 20.0, "jitter_ms": 2.0, "upload_mbps": 300.0, "rdns": "c-73-15-2-9.hsd1.ca.comcast.net"}, "pass", "latency"),
        (">=48gb", {"latency_ms": 20.0, "jitter_ms": 2.0, "upload_mbps": 300.0, "rdns": "pool-71-1-2-3.nycmny.fios.verizon.net"}, "warn", "residential"),
        (">=12gb", {"latency_ms": 20.0, "jitter_ms": 2.0, "upload_mbps": 300.0, "rdns": "pool-71-1-2-3.nycmny.fios.verizon.net"}, "pass", "latency"),
        (">=24gb", {"latency_ms": 40.0, "jitter_ms": 45.0, "upload_mbps": 300.0, "rdns": None}, "warn", "varies by 45 ms"),
        (">=24gb", {"error": "ConnectError: [Errno 111] Connection refused"}, "fail", "cannot reach"),
    ],
)
def test_network(tier, link, status, says):
    c = checks.check_network(tier, link)
    assert c.status == status and says in c.message


def test_network_without_a_control_plane_is_skipped_with_the_way_to_run_it():
    c = checks.check_network("cpu", None)
    assert c.status == "skip" and "--control-plane" in c.fix
