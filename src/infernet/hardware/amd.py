"""AMD GPUs through ROCm's tools: `rocm-smi --json`, else `rocminfo`, else `amd-smi`.

`rocm-smi` may print warnings before its JSON and spells its keys with varying case
("Card series" / "Card Series") across releases, so the parser looks for the first JSON
object and matches keys without case. `rocminfo` is the other source the reference uses: HSA
agents of type GPU and the size of their first coarse-grained memory pool. The ROCm release
(5.7+ needed) comes from `$ROCM_PATH/.info/version`, else from `amd-smi version`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from infernet.hardware._run import ToolResult, run_tool
from infernet.hardware.devices import Gpu, Probe, mib

INSTALL_HINT = "install ROCm with AMD's installer (`amdgpu-install --usecase=rocm`), then reboot"
GROUPS_HINT = "add your user to the render and video groups (`sudo usermod -aG render,video $USER`), then log in again"


def _first_json(text: str) -> Any:
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise ValueError("no JSON in the output")
    value, _ = json.JSONDecoder().raw_decode(text[start:])
    return value


def _get(d: dict[str, Any], *names: str) -> Any:
    lowered = {k.lower(): v for k, v in d.items()}
    for n in names:
        v = lowered.get(n.lower())
        if v not in (None, "", "N/A", "unknown"):
            return v
    return None


def parse_rocm_smi(text: str) -> tuple[list[Gpu], dict[str, str]]:
    data = _first_json(text)
    if not isinstance(data, dict):
        raise ValueError("rocm-smi JSON is not an object")
    system = data.get("system") if isinstance(data.get("system"), dict) else {}
    driver = _get(system, "Driver version")
    gpus = []
    for key in sorted((k for k in data if re.fullmatch(r"card\d+", k)), key=lambda k: int(k[4:])):
        card = data[key]
        if not isinstance(card, dict):
            continue
        total = _get(card, "VRAM Total Memory (B)")
        used = _get(card, "VRAM Total Used Memory (B)")
        gpus.append(
            Gpu(
                vendor="amd",
                index=int(key[4:]),
                name=str(_get(card, "Card series", "Card model", "Card SKU") or "AMD GPU"),
                vram_mb=mib(int(total)) if total is not None else 0,
                memory_used_mb=mib(int(used)) if used is not None else None,
                driver=_get(card, "Driver version") or driver,
                uuid=_get(card, "Unique ID"),
                arch=_get(card, "GFX Version"),
                source="rocm-smi --json",
            )
        )
    return gpus, ({"driver_version": driver} if driver else {})


def parse_rocminfo(text: str) -> list[Gpu]:
    gpus: list[Gpu] = []
    for block in re.split(r"\*{3,}\s*\n\s*Agent \d+\s*\n\s*\*{3,}", text)[1:]:
        fields: dict[str, str] = {}
        for key, value in re.findall(r"^\s*([A-Za-z][A-Za-z .()]*?):\s+(\S.*?)\s*$", block, re.M):
            fields.setdefault(key, value)  # the agent's own fields come before its ISA's
        if fields.get("Device Type") != "GPU":
            continue
        size_kb = 0
        for pool in re.split(r"\n\s*Pool \d+\s*\n", block)[1:]:
            if "COARSE GRAINED" in pool and (m := re.search(r"Size:\s+(\d+)", pool)):
                size_kb = int(m.group(1))
                break
        uuid = fields.get("Uuid")
        gpus.append(
            Gpu(
                vendor="amd",
                index=len(gpus),
                name=fields.get("Marketing Name") or fields.get("Name", "AMD GPU"),
                vram_mb=size_kb // 1024,
                uuid=uuid if uuid and uuid != "GPU-XX" else None,
                arch=fields.get("Name") if fields.get("Name", "").startswith("gfx") else None,
                source="rocminfo",
            )
        )
    return gpus


def _size_mb(v: Any) -> int:
    if isinstance(v, dict):
        value, unit = v.get("value"), str(v.get("unit", "MB")).upper()
    else:
        m = re.match(r"\s*([\d.]+)\s*([KMGT]?I?B)?", str(v))
        if not m:
            return 0
        value, unit = m.group(1), (m.group(2) or "MB").upper()
    scale = {"B": 1 / 2**20, "KB": 1 / 1024, "KIB": 1 / 1024, "MB": 1, "MIB": 1, "GB": 1024, "GIB": 1024}.get(unit, 1)
    return int(float(value) * scale)


def parse_amd_smi(text: str) -> list[Gpu]:
    """`amd-smi static --asic --vram --driver --json` (a list, or {"gpu_data": [...]})."""
    data = _first_json(text)
    if isinstance(data, dict):
        data = data.get("gpu_data", [])
    gpus = []
    for i, item in enumerate(data if isinstance(data, list) else []):
        asic, vram, drv = (item.get(k) or {} for k in ("asic", "vram", "driver"))
        size = _get(vram, "size", "vram_size", "vram_size_mb") if isinstance(vram, dict) else None
        gpus.append(
            Gpu(
                vendor="amd",
                index=int(item.get("gpu", i)),
                name=str(_get(asic, "market_name") or "AMD GPU"),
                vram_mb=_size_mb(size) if size is not None else 0,
                driver=_get(drv, "version") if isinstance(drv, dict) else None,
                arch=_get(asic, "target_graphics_version"),
                source="amd-smi static",
            )
        )
    return gpus


def rocm_version() -> str | None:
    for root in (os.environ.get("ROCM_PATH"), "/opt/rocm"):
        if root and (f := Path(root) / ".info" / "version").is_file():
            if m := re.match(r"\s*(\d+\.\d+(?:\.\d+)?)", f.read_text(errors="replace")):
                return m.group(1)
    res = run_tool(["amd-smi", "version"])
    if res.ok and (m := re.search(r"ROCm version:\s*(\d+\.\d+(?:\.\d+)?)", res.stdout)):
        return m.group(1)
    return None


def _failure(res: ToolResult) -> tuple[str, str]:
    if res.timed_out:
        return f"{res.tool} did not answer within its time limit", "check `dmesg` for amdgpu errors"
    text = (res.stdout + "\n" + res.stderr).lower()
    if "not loaded" in text or "driver not initialized" in text or "amdgpu not found" in text:
        return "the amdgpu kernel driver is not loaded", INSTALL_HINT
    if "permission" in text or "out_of_resources" in text or "/dev/kfd" in text:
        return f"{res.tool} cannot open the GPU (permissions on /dev/kfd)", GROUPS_HINT
    return f"{res.tool} failed: {res.first_line()}", INSTALL_HINT


def probe() -> Probe:
    attempts: list[tuple[ToolResult, str]] = []
    for argv, parse in (
        (["rocm-smi", "--showproductname", "--showmeminfo", "vram", "--showdriverversion", "--json"], "rocm-smi"),
        (["rocminfo"], "rocminfo"),
        (["amd-smi", "static", "--asic", "--vram", "--driver", "--json"], "amd-smi"),
    ):
        res = run_tool(argv)
        if not res.found:
            continue
        gpus: list[Gpu] = []
        info: dict[str, str] = {}
        if res.ok:
            try:
                if parse == "rocm-smi":
                    gpus, info = parse_rocm_smi(res.stdout)
                elif parse == "rocminfo":
                    gpus = parse_rocminfo(res.stdout)
                else:
                    gpus = parse_amd_smi(res.stdout)
            except (ValueError, TypeError, KeyError, AttributeError):
                attempts.append((res, "unreadable"))
                continue
        if gpus:
            # rocm-smi before ROCm 6 does not name the gfx target; rocminfo does.
            if any(g.arch is None for g in gpus) and parse == "rocm-smi":
                extra = run_tool(["rocminfo"])
                if extra.ok:
                    by_name = {g.name: g.arch for g in parse_rocminfo(extra.stdout)}
                    for g in gpus:
                        g.arch = g.arch or by_name.get(g.name)
            if version := rocm_version():
                info["rocm_version"] = version
            return Probe("amd", res.tool, "found", f"{len(gpus)} AMD GPU(s) via {res.tool}", gpus, info)
        attempts.append((res, ""))
    if not attempts:
        return Probe("amd", "rocm-smi", "absent", "no ROCm tool (rocm-smi, rocminfo, amd-smi) on PATH")
    res, note = attempts[0]
    if res.ok and not note:
        return Probe("amd", res.tool, "none", f"{res.tool} found no AMD GPU")
    reason, fix = _failure(res)
    return Probe("amd", res.tool, "failed", reason, info={"fix": fix})
