"""What the probes return: GPUs, and for each vendor what its tool said."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Vendor = Literal["nvidia", "amd", "apple"]
# found: the tool listed devices. absent: no tool on PATH. failed: the tool is there but
# broke (driver not loaded, timeout). none: the tool ran and saw no device.
ProbeStatus = Literal["found", "absent", "failed", "none"]


@dataclass(slots=True)
class Gpu:
    vendor: Vendor
    name: str
    vram_mb: int  # MiB, as the tool reports it (a little under the sold size)
    index: int = 0
    driver: str | None = None
    uuid: str | None = None
    memory_used_mb: int | None = None
    compute_capability: str | None = None  # NVIDIA, e.g. "8.9"
    arch: str | None = None  # AMD gfx target ("gfx1030"), Apple Metal family ("metal3")
    unified_memory: bool = False  # Apple: vram_mb is the GPU's usable share of RAM
    source: str = ""  # the tool that reported it
    tier: str = "cpu"  # this card alone

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Probe:
    vendor: Vendor
    tool: str
    status: ProbeStatus
    reason: str
    gpus: list[Gpu] = field(default_factory=list)
    # Versions the checks need: cuda_version, rocm_version, metal, driver.
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"vendor": self.vendor, "tool": self.tool, "status": self.status, "reason": self.reason, "info": self.info}


def mib(n_bytes: int) -> int:
    return n_bytes // (1024 * 1024)
