"""What this machine has: GPUs, RAM, disk, OS; and the VRAM tier that follows."""

from __future__ import annotations

import os
import platform
import shutil
from typing import Any

import psutil

from infernet.hardware.tiers import TIERS, tier_for_vram_mb


def summary() -> dict[str, Any]:
    """A coarse hardware summary for node registration (no GPU probe yet: the cpu tier)."""
    vm = psutil.virtual_memory()
    disk = shutil.disk_usage(os.path.expanduser("~"))
    return {
        "tier": "cpu",
        "gpus": [],
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count() or 1,
        "ram_mb": vm.total // (1024 * 1024),
        "disk_free_gb": round(disk.free / 1e9, 1),
        "os": f"{platform.system()} {platform.release()}",
    }


__all__ = ["TIERS", "summary", "tier_for_vram_mb"]
