"""NVIDIA GPUs through `nvidia-smi`: the `--query-gpu` CSV for the cards, `-q -x` XML for CUDA.

The CSV is the stable scripting interface; `compute_cap` only exists from driver 510 on,
so an older driver gets the same query without it. The XML carries the CUDA version the
driver supports (vLLM and SGLang need 12.1+) and lists the cards again, which is the
fallback when the CSV cannot be read.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET

from infernet.hardware._run import ToolResult, run_tool
from infernet.hardware.devices import Gpu, Probe

FIELDS = ["index", "name", "memory.total", "memory.used", "driver_version", "uuid", "compute_cap"]
INSTALL_HINT = (
    "install the NVIDIA driver (Ubuntu: `sudo ubuntu-drivers install`, or the driver from "
    "developer.nvidia.com), then reboot; `nvidia-smi` must list the card"
)

# What nvidia-smi prints when it cannot do its job, and what it means for an operator.
_FAILURES = (
    ("couldn't communicate with the nvidia driver", "the NVIDIA driver is not loaded (nvidia-smi could not talk to it)", INSTALL_HINT),
    ("driver/library version mismatch", "the NVIDIA kernel driver and its library differ (a driver upgrade without a reboot)", "reboot so the new driver loads"),
    ("couldn't find libnvidia-ml", "the NVIDIA management library is missing (driver half installed)", INSTALL_HINT),
    ("unable to determine the device handle", "a GPU stopped answering (fallen off the bus?)", "check `dmesg` for Xid errors; reseat or power-cycle the card"),
)


def _value(text: str) -> str | None:
    text = text.strip()
    return None if not text or text.startswith("[") or text.upper() in ("N/A", "NOT SUPPORTED") else text


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    m = re.match(r"\s*(\d+)", text)
    return int(m.group(1)) if m else None


def parse_csv(text: str) -> list[Gpu]:
    """Rows of `--query-gpu=<FIELDS> --format=csv,noheader,nounits` (compute_cap optional)."""
    gpus = []
    for row in csv.reader(io.StringIO(text), skipinitialspace=True):
        if len(row) < 6 or not row[0].strip().isdigit():
            continue
        cc = _value(row[6]) if len(row) > 6 else None
        gpus.append(
            Gpu(
                vendor="nvidia",
                index=int(row[0]),
                name=row[1].strip(),
                vram_mb=_int(_value(row[2])) or 0,
                memory_used_mb=_int(_value(row[3])),
                driver=_value(row[4]),
                uuid=_value(row[5]),
                compute_capability=cc,
                source="nvidia-smi --query-gpu",
            )
        )
    return gpus


def parse_xml(text: str) -> tuple[list[Gpu], dict[str, str]]:
    """`nvidia-smi -q -x`: the cards, and {driver_version, cuda_version} when present."""
    root = ET.fromstring(text.strip())
    info = {k: v for k in ("driver_version", "cuda_version") if (v := _value(root.findtext(k) or ""))}
    gpus = []
    for i, el in enumerate(root.findall("gpu")):
        fb = el.find("fb_memory_usage")
        gpus.append(
            Gpu(
                vendor="nvidia",
                index=i,
                name=(el.findtext("product_name") or "NVIDIA GPU").strip(),
                vram_mb=_int(_value(fb.findtext("total") or "")) or 0 if fb is not None else 0,
                memory_used_mb=_int(_value(fb.findtext("used") or "")) if fb is not None else None,
                driver=info.get("driver_version"),
                uuid=_value(el.findtext("uuid") or ""),
                source="nvidia-smi -q -x",
            )
        )
    return gpus, info


def _failure(res: ToolResult) -> tuple[str, str]:
    if res.timed_out:
        return "nvidia-smi did not answer within its time limit (a hung driver?)", "check `dmesg` for NVIDIA Xid errors; a reboot usually clears a hung driver"
    text = (res.stdout + "\n" + res.stderr).lower()
    for needle, reason, fix in _FAILURES:
        if needle in text:
            return reason, fix
    return f"nvidia-smi failed: {res.first_line()}", INSTALL_HINT


def probe() -> Probe:
    res = run_tool(["nvidia-smi", f"--query-gpu={','.join(FIELDS)}", "--format=csv,noheader,nounits"])
    if not res.found:
        return Probe("nvidia", "nvidia-smi", "absent", "nvidia-smi not found on PATH")
    if not res.ok and "compute_cap" in (res.stdout + res.stderr) and not res.timed_out:
        res = run_tool(["nvidia-smi", f"--query-gpu={','.join(FIELDS[:-1])}", "--format=csv,noheader,nounits"])
    if not res.ok:
        if "no devices were found" in (res.stdout + res.stderr).lower():
            return Probe("nvidia", "nvidia-smi", "none", "nvidia-smi found no NVIDIA GPU")
        reason, fix = _failure(res)
        return Probe("nvidia", "nvidia-smi", "failed", reason, info={"fix": fix})
    gpus = parse_csv(res.stdout)
    info: dict[str, str] = {}
    xml = run_tool(["nvidia-smi", "-q", "-x"])
    if xml.ok:
        try:
            xml_gpus, info = parse_xml(xml.stdout)
        except ET.ParseError:
            xml_gpus = []
        if not gpus:
            gpus = xml_gpus
    if gpus and "driver_version" not in info and gpus[0].driver:
        info["driver_version"] = gpus[0].driver
    if not gpus:
        return Probe("nvidia", "nvidia-smi", "none", "nvidia-smi listed no GPU", info=info)
    return Probe("nvidia", "nvidia-smi", "found", f"{len(gpus)} NVIDIA GPU(s) via nvidia-smi", gpus, info)
