"""Does a model fit this machine? The reference's rule, in one place so it can be swapped
for the catalog's finer estimate: weights <= 0.85 x VRAM on a GPU, <= 0.6 x RAM on CPU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GPU_SHARE = 0.85
CPU_SHARE = 0.6


@dataclass(frozen=True)
class Fit:
    ok: bool
    size_bytes: int
    limit_bytes: int
    where: str  # "GPU" or "CPU"

    @property
    def reason(self) -> str:
        share = GPU_SHARE if self.where == "GPU" else CPU_SHARE
        memory = "VRAM" if self.where == "GPU" else "RAM"
        verdict = "fits" if self.ok else "does not fit"
        return f"{human(self.size_bytes)} {verdict} in {share:g} x {memory} = {human(self.limit_bytes)} ({self.where})"


def check_fit(size_bytes: int, hardware: dict[str, Any] | None = None) -> Fit:
    """Against `hardware.summary()` (GPUs with `vram_mb`, and `ram_mb`)."""
    if hardware is None:
        from infernet.hardware import summary

        hardware = summary()
    vram_mb = sum(int(g.get("vram_mb") or g.get("memory_total_mb") or 0) for g in hardware.get("gpus") or [] if isinstance(g, dict))
    if vram_mb:
        limit = int(vram_mb * 1024 * 1024 * GPU_SHARE)
        return Fit(size_bytes <= limit, size_bytes, limit, "GPU")
    limit = int(int(hardware.get("ram_mb") or 0) * 1024 * 1024 * CPU_SHARE)
    return Fit(size_bytes <= limit, size_bytes, limit, "CPU")


def human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n:.1f} TB"
