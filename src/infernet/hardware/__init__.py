"""What this machine has (GPUs, RAM, disk, OS), the VRAM tier that follows, and the
requirement checks an operator sees. `detect()` runs the probes; `summary()` is the
compact view a node sends when it registers."""

from __future__ import annotations

import importlib.util
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infernet.hardware import amd, apple, checks, nvidia, system
from infernet.hardware.checks import Check
from infernet.hardware.devices import Gpu, Probe
from infernet.hardware.tiers import TIERS, choose, tier_for_gpu, tier_for_vram_mb


@dataclass
class Report:
    tier: str
    tier_basis: dict[str, Any]
    gpus: list[Gpu]
    probes: list[Probe]
    cpu: dict[str, Any]
    ram_mb: int
    disk: dict[str, Any]
    os: dict[str, Any]
    tensor_parallel: list[str]
    checks: list[Check] = field(default_factory=list)
    network: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "tier_basis": self.tier_basis,
            "gpus": [g.to_dict() for g in self.gpus],
            "probes": [p.to_dict() for p in self.probes],
            "cpu": self.cpu,
            "ram_mb": self.ram_mb,
            "disk": self.disk,
            "os": self.os,
            "tensor_parallel_engines": self.tensor_parallel,
            "network": self.network,
            "checks": [c.to_dict() for c in self.checks],
        }

    @property
    def vendor(self) -> str:
        """The vendor whose card decides the tier, or "cpu"."""
        if not self.tier_basis["gpus"]:
            return "cpu"
        return self.tier_basis["gpus"][0].split(":")[0]


def tensor_parallel_engines() -> list[str]:
    """vLLM / SGLang installed here (their CLI on PATH or their Python package importable)."""
    found = []
    for name in ("vllm", "sglang"):
        if shutil.which(name) or importlib.util.find_spec(name) is not None:
            found.append(name)
    return found


def detect(
    models_dir: Path | None = None,
    *,
    model_sizes: list[tuple[str, float, float]] | None = None,
    link: dict[str, Any] | None = None,
    root: Path = Path("/"),
    system_name: str | None = None,
    run_checks: bool = True,
) -> Report:
    """Probe every vendor, then tier and check. Never raises for what a machine lacks."""
    from infernet import config

    system_name = system_name or platform.system()
    probes = [nvidia.probe(), amd.probe()]
    if system_name == "Darwin":
        probes.append(apple.probe())
    gpus = [g for p in probes for g in p.gpus]
    tp = tensor_parallel_engines()
    tier, basis = choose(gpus, tensor_parallel=bool(tp))
    os_info = system.os_info(root, system_name)
    ram = system.ram_mb()
    disk = system.disk_info(models_dir or config.home(), root)
    report = Report(tier, basis, gpus, probes, system.cpu_info(root, system_name), ram, disk, os_info, tp, network=link)
    if run_checks:
        report.checks = [
            *checks.check_drivers(probes, gpus, system.pci_gpus(root) if system_name == "Linux" else []),
            checks.check_ram(tier, ram),
            checks.check_disk_space(tier, disk, model_sizes),
            checks.check_disk_type(disk),
            checks.check_os(os_info),
            checks.check_network(tier, link),
        ]
    return report


def summary() -> dict[str, Any]:
    """The node's registration view: tier, cards, RAM, OS (no checks, no network)."""
    r = detect(run_checks=False)
    return {
        "tier": r.tier,
        "tier_basis": r.tier_basis,
        "gpus": [{k: g.to_dict()[k] for k in ("vendor", "name", "vram_mb", "driver", "tier")} for g in r.gpus],
        "cpu": r.cpu["model"],
        "cpu_count": r.cpu["threads"],
        "ram_mb": r.ram_mb,
        "disk_free_gb": r.disk["free_gb"],
        "disk_kind": r.disk["kind"],
        "os": r.os["name"] + (" (WSL2)" if r.os.get("wsl") == 2 else ""),
    }


__all__ = ["TIERS", "Check", "Gpu", "Probe", "Report", "detect", "summary", "tier_for_gpu", "tier_for_vram_mb"]
