"""OS, WSL, disk kind and PCI scan, read from a fake /etc, /proc and /sys."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from infernet.hardware import system


def _write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


UBUNTU_2404 = 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\nID_LIKE=debian\n'


def test_ubuntu(tmp_path):
    _write(tmp_path, "etc/os-release", UBUNTU_2404)
    _write(tmp_path, "proc/version", "Linux version 6.8.0-45-generic (buildd@lcy02-amd64-115) (x86_64-linux-gnu-gcc-13) #45-Ubuntu SMP")
    info = system.os_info(tmp_path, "Linux")
    assert (info["id"], info["version"], info["name"], info["wsl"]) == ("ubuntu", "24.04", "Ubuntu 24.04.1 LTS", None)


def test_wsl2_and_wsl1(tmp_path):
    _write(tmp_path, "proc/version", "Linux version 5.15.153.1-microsoft-standard-WSL2 (root@941d701f84f1) (gcc (GCC) 11.2.0) #1 SMP")
    assert system.wsl_version(tmp_path, env={}) == 2
    _write(tmp_path, "proc/version", "Linux version 4.4.0-19041-Microsoft (Microsoft@Microsoft.com) (gcc version 5.4.0 (GCC) ) #1237-Microsoft")
    assert system.wsl_version(tmp_path, env={}) == 1
    _write(tmp_path, "proc/version", "Linux version 6.1.0-26-amd64 (debian-kernel@lists.debian.org)")
    assert system.wsl_version(tmp_path, env={}) is None


def test_this_machine_os_matches_os_release():
    info = system.os_info()
    text = Path("/etc/os-release").read_text()
    assert f'PRETTY_NAME="{info["name"]}"' in text
    assert info["system"] == "Linux"


def _sysfs_disk(root: Path, path: Path, disk: str, part: str | None, rotational: str) -> None:
    """/sys/dev/block/MAJ:MIN -> the device directory, as the kernel lays it out."""
    st = os.stat(path).st_dev
    devdir = root / "sys/devices/pci0000:00/0000:00:1d.0" / disk
    _write(root, f"sys/devices/pci0000:00/0000:00:1d.0/{disk}/queue/rotational", rotational + "\n")
    target = devdir
    if part:
        target = devdir / part
        _write(root, f"sys/devices/pci0000:00/0000:00:1d.0/{disk}/{part}/partition", "1\n")
    link = root / "sys/dev/block" / f"{os.major(st)}:{os.minor(st)}"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


@pytest.mark.parametrize(
    ("disk", "part", "rotational", "kind"),
    [("nvme0n1", "nvme0n1p2", "0", "nvme"), ("sda", "sda1", "0", "ssd"), ("sdb", None, "1", "hdd"), ("vda", None, "1", "virtual"), ("mmcblk0", "mmcblk0p1", "0", "sd/emmc")],
)
def test_disk_kind_from_sysfs(tmp_path, disk, part, rotational, kind):
    root = tmp_path / "root"
    models = tmp_path / "models"
    models.mkdir()
    _sysfs_disk(root, models, disk, part, rotational)
    info = system.disk_info(models, root)
    assert (info["device"], info["kind"], info["rotational"]) == (disk, kind, rotational == "1")
    assert info["free_gb"] > 0 and info["total_gb"] >= info["free_gb"]


def test_disk_through_lvm_follows_the_slave(tmp_path):
    root = tmp_path / "root"
    models = tmp_path / "models"
    models.mkdir()
    st = os.stat(models).st_dev
    _write(root, "sys/devices/pci0000:00/nvme0n1/queue/rotational", "0\n")
    _write(root, "sys/devices/pci0000:00/nvme0n1/nvme0n1p3/partition", "3\n")
    (root / "sys/devices/virtual/block/dm-0/slaves").mkdir(parents=True)
    (root / "sys/devices/virtual/block/dm-0/slaves/nvme0n1p3").symlink_to("../../../../pci0000:00/nvme0n1/nvme0n1p3")
    (root / "sys/dev/block").mkdir(parents=True)
    (root / "sys/dev/block" / f"{os.major(st)}:{os.minor(st)}").symlink_to("../../devices/virtual/block/dm-0")
    assert system.disk_info(models, root)["kind"] == "nvme"


def test_missing_models_dir_uses_its_nearest_parent(tmp_path):
    info = system.disk_info(tmp_path / "not" / "yet" / "there")
    assert info["path"].endswith("not/yet/there") and info["free_gb"] > 0


def test_pci_scan_finds_cards_without_a_driver(tmp_path):
    base = "sys/bus/pci/devices"
    _write(tmp_path, f"{base}/0000:01:00.0/class", "0x030000\n")
    _write(tmp_path, f"{base}/0000:01:00.0/vendor", "0x10de\n")
    _write(tmp_path, f"{base}/0000:01:00.0/device", "0x2684\n")
    _write(tmp_path, f"{base}/0000:00:1f.3/class", "0x040300\n")  # audio: not a GPU
    _write(tmp_path, f"{base}/0000:00:1f.3/vendor", "0x8086\n")
    _write(tmp_path, f"{base}/0000:c1:00.0/class", "0x038000\n")
    _write(tmp_path, f"{base}/0000:c1:00.0/vendor", "0x1002\n")
    found = system.pci_gpus(tmp_path)
    assert [(d["slot"], d["vendor"], d["driver"]) for d in found] == [("0000:01:00.0", "nvidia", ""), ("0000:c1:00.0", "amd", "")]


def test_ram_is_psutils():
    assert system.ram_mb() == psutil.virtual_memory().total // 2**20
