"""Apple Silicon through `system_profiler SPDisplaysDataType -json` and `sysctl`.

The GPU shares the machine's RAM. Metal lets one process wire only part of it (its
`recommendedMaxWorkingSetSize`): about two thirds of RAM up to 36 GiB, three quarters
above. An operator may raise that with `sysctl iogpu.wired_limit_mb`; when set, it wins.
That usable share, not all of RAM, is what a model can use, so it is the card's `vram_mb`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from infernet.hardware._run import run_tool
from infernet.hardware.devices import Gpu, Probe, mib


def usable_share_mb(ram_mb: int, wired_limit_mb: int | None = None) -> int:
    if wired_limit_mb:
        return min(wired_limit_mb, ram_mb)
    return ram_mb * 3 // 4 if ram_mb > 36 * 1024 else ram_mb * 2 // 3


def _metal(entry: dict[str, Any]) -> str | None:
    raw = entry.get("spdisplays_mtlgpufamilysupport") or entry.get("spdisplays_metal") or ""
    m = re.search(r"metal\s*(\d+)", str(raw), re.I)
    if m:
        return f"metal{m.group(1)}"
    return "metal" if "supported" in str(raw).lower() else None


def parse_displays(text: str, ram_mb: int, wired_limit_mb: int | None = None) -> list[Gpu]:
    data = json.loads(text)
    gpus = []
    for entry in data.get("SPDisplaysDataType", []):
        model = str(entry.get("sppci_model") or entry.get("_name") or "")
        vendor = str(entry.get("spdisplays_vendor") or entry.get("sppci_vendor") or "")
        if "apple" not in vendor.lower() and not model.startswith("Apple"):
            continue  # an Intel Mac's discrete card: no Apple Silicon unified memory
        cores = entry.get("sppci_cores")
        gpus.append(
            Gpu(
                vendor="apple",
                index=len(gpus),
                name=model + (f" ({cores}-core GPU)" if cores else ""),
                vram_mb=usable_share_mb(ram_mb, wired_limit_mb),
                arch=_metal(entry),
                driver="Metal" if _metal(entry) else None,
                unified_memory=True,
                source="system_profiler SPDisplaysDataType",
            )
        )
    return gpus


def _sysctl_int(name: str) -> int | None:
    res = run_tool(["sysctl", "-n", name])
    if not res.ok:
        return None
    nums = re.findall(r"\d+", res.stdout)
    return int(nums[-1]) if nums else None


def probe() -> Probe:
    res = run_tool(["system_profiler", "SPDisplaysDataType", "-json"], timeout=8.0)
    if not res.found:
        return Probe("apple", "system_profiler", "absent", "system_profiler not found (not macOS)")
    if not res.ok:
        return Probe("apple", "system_profiler", "failed", f"system_profiler failed: {res.first_line()}")
    memsize = _sysctl_int("hw.memsize")
    if memsize is None:
        return Probe("apple", "system_profiler", "failed", "`sysctl -n hw.memsize` gave no memory size")
    ram_mb = mib(memsize)
    wired = _sysctl_int("iogpu.wired_limit_mb")
    try:
        gpus = parse_displays(res.stdout, ram_mb, wired)
    except (ValueError, AttributeError) as exc:
        return Probe("apple", "system_profiler", "failed", f"system_profiler output could not be read ({exc})")
    if not gpus:
        return Probe("apple", "system_profiler", "none", "no Apple Silicon GPU (an Intel Mac runs models on the CPU)")
    info = {"metal": gpus[0].arch or "unknown", "ram_mb": ram_mb, "wired_limit_mb": wired or 0}
    return Probe("apple", "system_profiler", "found", f"{gpus[0].name}, {gpus[0].vram_mb} MiB of {ram_mb} MiB unified memory usable by Metal", gpus, info)
