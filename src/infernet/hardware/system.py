"""The rest of the machine: CPU, RAM, OS (WSL2 included), the disk models live on, and
GPUs on the PCI bus whose driver is missing. Paths are read under `root` so tests can
build a fake /etc, /proc and /sys."""

from __future__ import annotations

import os
import platform
import re
import shutil
from pathlib import Path
from typing import Any

import psutil

from infernet.hardware._run import run_tool

PCI_VENDORS = {"0x10de": "nvidia", "0x1002": "amd"}


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


def cpu_info(root: Path = Path("/"), system: str | None = None) -> dict[str, Any]:
    system = system or platform.system()
    model = ""
    if system == "Darwin":
        res = run_tool(["sysctl", "-n", "machdep.cpu.brand_string"])
        model = res.stdout.strip() if res.ok else ""
    else:
        m = re.search(r"^model name\s*:\s*(.+)$", _read(root / "proc/cpuinfo"), re.M)
        model = m.group(1).strip() if m else ""
    return {
        "model": model or platform.processor() or platform.machine(),
        "cores": psutil.cpu_count(logical=False) or os.cpu_count() or 1,
        "threads": psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        "arch": platform.machine(),
    }


def ram_mb() -> int:
    return psutil.virtual_memory().total // (1024 * 1024)


def _os_release(root: Path) -> dict[str, str]:
    text = _read(root / "etc/os-release") or _read(root / "usr/lib/os-release")
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip().strip('"').strip("'")
    return out


def wsl_version(root: Path = Path("/"), env: dict[str, str] | None = None) -> int | None:
    """2 for WSL2, 1 for WSL1, None elsewhere (from the kernel's own version string)."""
    env = os.environ if env is None else env
    text = _read(root / "proc/version") or _read(root / "proc/sys/kernel/osrelease")
    if "microsoft" not in text.lower():
        return 2 if env.get("WSL_DISTRO_NAME") and (root / "run/WSL").exists() else None
    # WSL2 kernels are "...-microsoft-standard-WSL2"; WSL1 reports "...-Microsoft".
    return 2 if re.search(r"wsl2|microsoft-standard", text, re.I) else 1


def os_info(root: Path = Path("/"), system: str | None = None) -> dict[str, Any]:
    system = system or platform.system()
    info: dict[str, Any] = {"system": system, "kernel": platform.release(), "arch": platform.machine(), "wsl": None}
    if system == "Linux":
        rel = _os_release(root)
        info.update(
            id=rel.get("ID", "linux").lower(),
            id_like=rel.get("ID_LIKE", "").lower().split(),
            version=rel.get("VERSION_ID", ""),
            name=rel.get("PRETTY_NAME") or rel.get("NAME") or "Linux",
            wsl=wsl_version(root),
        )
    elif system == "Darwin":
        version = platform.mac_ver()[0]
        info.update(id="macos", id_like=[], version=version, name=f"macOS {version}".strip())
    else:
        info.update(id=system.lower(), id_like=[], version=platform.version(), name=f"{system} {platform.release()}")
    return info


def pci_gpus(root: Path = Path("/")) -> list[dict[str, str]]:
    """Display controllers from NVIDIA/AMD on the PCI bus, driver or not."""
    out = []
    base = root / "sys/bus/pci/devices"
    try:
        entries = sorted(base.iterdir())
    except OSError:
        return []
    for dev in entries:
        cls, vendor = _read(dev / "class"), _read(dev / "vendor").lower()
        # 0x03xxxx: display controllers (VGA, 3D, other); AMD's 0x0380 Instinct included.
        if cls.startswith("0x03") and vendor in PCI_VENDORS:
            driver = (dev / "driver").resolve().name if (dev / "driver").exists() else None
            out.append({"slot": dev.name, "vendor": PCI_VENDORS[vendor], "device": _read(dev / "device"), "driver": driver or ""})
    return out


def _existing(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _block_device(root: Path, st_dev: int) -> Path | None:
    """/sys/block/<disk> for the device holding `st_dev`, through partitions and dm/md."""
    link = root / "sys/dev/block" / f"{os.major(st_dev)}:{os.minor(st_dev)}"
    if not link.exists():
        return None
    dev = link.resolve()
    if (dev / "partition").exists():
        dev = dev.parent
    for _ in range(4):  # LVM/dm-crypt/RAID: follow the first slave down to a real disk
        slaves = sorted((dev / "slaves").glob("*")) if (dev / "slaves").is_dir() else []
        if not slaves:
            break
        dev = slaves[0].resolve()
        if (dev / "partition").exists():
            dev = dev.parent
    return dev


def disk_kind(name: str, rotational: str) -> str:
    """nvme, ssd (SATA/SAS), hdd, virtual (a VM's disk: the host's media is unknown), or unknown."""
    if name.startswith("nvme"):
        return "nvme"
    if re.match(r"(x?vd|vd)[a-z]", name):
        return "virtual"
    if name.startswith("mmcblk"):
        return "sd/emmc"
    if rotational == "0":
        return "ssd"
    if rotational == "1":
        return "hdd"
    return "unknown"


def disk_info(path: Path, root: Path = Path("/")) -> dict[str, Any]:
    where = _existing(path)
    usage = shutil.disk_usage(where)
    info: dict[str, Any] = {
        "path": str(path.expanduser()),
        "total_gb": round(usage.total / 1e9, 1),
        "free_gb": round(usage.free / 1e9, 1),
        "device": None,
        "kind": "unknown",
        "rotational": None,
    }
    dev = _block_device(root, os.stat(where).st_dev)
    if dev is not None:
        rot = _read(dev / "queue/rotational")
        info.update(device=dev.name, rotational=rot == "1" if rot else None, kind=disk_kind(dev.name, rot))
    return info
