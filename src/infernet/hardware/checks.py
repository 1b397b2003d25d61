"""Requirement checks: pure functions from what was detected to pass / warn / fail.

Each check names the reason and the fix. `skip` means the check could not run (no control
plane to measure against) and says how to make it run.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

from infernet.hardware import amd, nvidia
from infernet.hardware.devices import Gpu, Probe
from infernet.hardware.tiers import DISK_GB, RAM_GB, REPORTED_FRACTION, rank

Status = Literal["pass", "warn", "fail", "skip"]

# The reference's storage table: parameters (billions) -> approximate disk GB at FP16 and Q4.
STORAGE_GB = ((3, 6, 2), (7, 14, 4), (14, 28, 8), (33, 65, 18), (72, 140, 40))
# The largest model the reference says each tier runs: what the disk must hold by default.
TYPICAL_MODEL_B = {">=48gb": 72, ">=24gb": 33, ">=12gb": 14, ">=8gb": 7, "cpu": 3}

MIN_UPLOAD_MBPS = 100
MAX_LATENCY_MS = 100


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    message: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def worst(checks: list[Check]) -> Status:
    order = ("fail", "warn", "skip", "pass")
    return min((c.status for c in checks), key=order.index, default="pass")


def _version(text: str | None) -> tuple[int, ...] | None:
    m = re.match(r"\s*(\d+)(?:\.(\d+))?", text or "")
    return (int(m.group(1)), int(m.group(2) or 0)) if m else None


def check_ram(tier: str, ram_mb: int) -> Check:
    low, rec = RAM_GB[tier]
    have = ram_mb / 1024
    # RAM sold as 64 GB shows as a little less once the kernel has taken its share.
    if ram_mb < low * 1024 * REPORTED_FRACTION:
        return Check("ram", "fail", f"{have:.0f} GiB RAM; the {tier} tier needs at least {low} GB", f"add RAM to reach {low} GB ({rec} GB recommended)")
    if ram_mb < rec * 1024 * REPORTED_FRACTION:
        return Check("ram", "warn", f"{have:.0f} GiB RAM: enough for {tier} (minimum {low} GB), under the recommended {rec} GB", f"{rec} GB lets vLLM/SGLang spill KV cache to RAM; Ollama is less demanding")
    return Check("ram", "pass", f"{have:.0f} GiB RAM (the {tier} tier recommends {rec} GB)")


def storage_gb(params_b: float) -> tuple[int, int]:
    """The reference's disk estimate (FP16, Q4) for a model of `params_b` billion parameters."""
    for size, fp16, q4 in STORAGE_GB:
        if params_b <= size:
            return fp16, q4
    return STORAGE_GB[-1][1], STORAGE_GB[-1][2]


def check_disk_space(tier: str, disk: dict[str, Any], models: list[tuple[str, float, float]] | None = None) -> Check:
    """`models`: (name, GB at FP16, GB at Q4) for the models this node will keep on disk."""
    if not models:
        fp16, q4 = storage_gb(TYPICAL_MODEL_B[tier])
        models = [(f"a {TYPICAL_MODEL_B[tier]}B model (the largest the {tier} tier runs)", fp16, q4)]
    need_fp16 = sum(m[1] for m in models)
    need_q4 = sum(m[2] for m in models)
    names = ", ".join(m[0] for m in models)
    free, total = disk["free_gb"], disk["total_gb"]
    where = disk["path"]
    if free < need_q4:
        return Check("disk_space", "fail", f"{free:.0f} GB free at {where}; {names} needs {need_q4:.0f} GB even at Q4", "free space there, or point INFERNET_HOME / the engine's model directory at a larger disk")
    minimum = DISK_GB[tier]
    if free < need_fp16:
        return Check("disk_space", "warn", f"{free:.0f} GB free at {where}: room for {names} at Q4 ({need_q4:.0f} GB), not at FP16 ({need_fp16:.0f} GB)", "use quantized weights, or add disk space")
    # A filesystem shows a little under its disk's sold (decimal) size: partitions, metadata.
    if total < minimum * 0.95:
        return Check("disk_space", "warn", f"the disk at {where} holds {total:.0f} GB; the {tier} tier recommends {minimum} GB", f"a {minimum} GB+ NVMe drive leaves room for several models")
    return Check("disk_space", "pass", f"{free:.0f} GB free of {total:.0f} GB at {where}; {names} needs {need_fp16:.0f} GB at FP16, {need_q4:.0f} GB at Q4")


def check_disk_type(disk: dict[str, Any]) -> Check:
    kind, dev = disk["kind"], disk.get("device") or "?"
    fix = "keep model weights on an NVMe SSD: cold starts load the whole model from disk"
    if kind == "nvme":
        return Check("disk_type", "pass", f"models live on NVMe ({dev})")
    if kind == "ssd":
        return Check("disk_type", "warn", f"models live on a SATA/SAS SSD ({dev}): cold starts are slower than on NVMe", fix)
    if kind == "hdd":
        return Check("disk_type", "warn", f"models live on a spinning disk ({dev}): a cold start of a large model takes minutes", fix)
    if kind == "virtual":
        return Check("disk_type", "warn", f"models live on a virtual disk ({dev}): its real media is unknown", "ask your provider for NVMe-backed storage")
    return Check("disk_type", "warn", f"cannot tell what kind of disk holds {disk['path']} ({kind})", fix)


_SUPPORTED = {"debian": 11, "fedora": 38}


def check_os(os_info: dict[str, Any]) -> Check:
    system, osid, name = os_info["system"], os_info.get("id", ""), os_info.get("name", "")
    version = _version(os_info.get("version"))
    if system == "Windows":
        return Check("os", "fail", "Windows is not supported", "install WSL2 (`wsl --install -d Ubuntu-24.04`) and run infernet inside it")
    if system == "Darwin":
        if "arm" in os_info.get("arch", "") or "aarch64" in os_info.get("arch", ""):
            return Check("os", "pass", f"{name} on Apple Silicon: supported (Metal via Ollama or llama.cpp); good for development and smaller production nodes")
        return Check("os", "warn", f"{name} on an Intel Mac: supported for development only (no Metal acceleration for models)", "use Apple Silicon or a Linux GPU box for a production node")
    if system != "Linux":
        return Check("os", "fail", f"{system} is not supported", "use Ubuntu 22.04/24.04 LTS")
    if os_info.get("wsl") == 1:
        return Check("os", "fail", f"{name} under WSL1: GPUs are not reachable", "convert it to WSL2: `wsl --set-version <distro> 2`")
    wsl = " under WSL2" if os_info.get("wsl") == 2 else ""
    wsl_fix = "WSL2 is fine for testing; run production nodes on Linux" if wsl else ""
    if osid == "ubuntu":
        if version in ((22, 4), (24, 4)):
            status: Status = "warn" if wsl else "pass"
            return Check("os", status, f"{name}{wsl}: the recommended OS", wsl_fix)
        return Check("os", "warn", f"{name}{wsl}: Ubuntu, but not a tested LTS", "Ubuntu 22.04 or 24.04 LTS is what the installer and daemon are tested on")
    if osid in _SUPPORTED:
        if version and version[0] >= _SUPPORTED[osid]:
            return Check("os", "warn" if wsl else "pass", f"{name}{wsl}: supported (Ubuntu 22.04/24.04 is recommended)", wsl_fix)
        return Check("os", "warn", f"{name}{wsl}: older than the supported {osid.title()} {_SUPPORTED[osid]}+", f"upgrade to {osid.title()} {_SUPPORTED[osid]}+ or Ubuntu 24.04")
    if osid == "centos" and version and version[0] >= 9:
        return Check("os", "warn" if wsl else "pass", f"{name}{wsl}: supported (Ubuntu 22.04/24.04 is recommended)", wsl_fix)
    if "debian" in os_info.get("id_like", []) or "ubuntu" in os_info.get("id_like", []):
        return Check("os", "warn" if wsl else "pass", f"{name}{wsl}: a Debian-based distro, supported (Ubuntu 22.04/24.04 is recommended)", wsl_fix)
    return Check("os", "warn", f"{name}{wsl}: not a tested distribution", "Ubuntu 22.04/24.04 LTS is recommended; Debian 11+, Fedora 38+ and CentOS Stream 9 are supported")


def check_drivers(probes: list[Probe], gpus: list[Gpu], pci: list[dict[str, str]]) -> list[Check]:
    by_vendor = {p.vendor: p for p in probes}
    out: list[Check] = []
    nv = by_vendor.get("nvidia")
    if nv is not None and nv.status == "found":
        cuda = nv.info.get("cuda_version")
        driver = nv.info.get("driver_version", "?")
        v = _version(cuda)
        if v is None:
            out.append(Check("driver_nvidia", "warn", f"NVIDIA driver {driver}; its CUDA version is unknown", "vLLM and SGLang need CUDA 12.1+ (driver 530 or newer); `nvidia-smi` shows it"))
        elif v < (12, 1):
            out.append(Check("driver_nvidia", "warn", f"NVIDIA driver {driver} supports CUDA {cuda}: Ollama works (it brings its own CUDA), vLLM and SGLang need 12.1+", "upgrade the NVIDIA driver to 530 or newer"))
        else:
            out.append(Check("driver_nvidia", "pass", f"NVIDIA driver {driver}, CUDA {cuda} (vLLM and SGLang need 12.1+)"))
    elif nv is not None and nv.status == "failed":
        out.append(Check("driver_nvidia", "fail", nv.reason, nv.info.get("fix", nvidia.INSTALL_HINT)))
    elif any(d["vendor"] == "nvidia" for d in pci):
        slot = next(d["slot"] for d in pci if d["vendor"] == "nvidia")
        out.append(Check("driver_nvidia", "fail", f"an NVIDIA GPU is on the PCI bus ({slot}) but nvidia-smi is missing: no driver", nvidia.INSTALL_HINT))
    am = by_vendor.get("amd")
    if am is not None and am.status == "found":
        rocm = am.info.get("rocm_version")
        v = _version(rocm)
        if v is None:
            out.append(Check("driver_amd", "warn", "AMD GPU found; the ROCm release is unknown", "ROCm 5.7+ is needed for RX 6000/7000; `cat /opt/rocm/.info/version` shows it"))
        elif v < (5, 7):
            out.append(Check("driver_amd", "warn", f"ROCm {rocm} is older than 5.7 (needed for RX 6000/7000 series)", amd.INSTALL_HINT))
        else:
            out.append(Check("driver_amd", "pass", f"ROCm {rocm} (5.7+ needed); Ollama has ROCm support built in"))
    elif am is not None and am.status == "failed":
        out.append(Check("driver_amd", "fail", am.reason, am.info.get("fix", amd.INSTALL_HINT)))
    elif any(d["vendor"] == "amd" for d in pci) and not any(g.vendor == "amd" for g in gpus):
        slot = next(d["slot"] for d in pci if d["vendor"] == "amd")
        out.append(Check("driver_amd", "warn", f"an AMD display controller is on the PCI bus ({slot}) but no ROCm tool sees it (an integrated GPU, or ROCm missing)", amd.INSTALL_HINT + " if it is a Radeon or Instinct card"))
    ap = by_vendor.get("apple")
    if ap is not None and ap.status == "found":
        out.append(Check("driver_apple", "pass", f"Apple Silicon: {ap.info.get('metal', 'Metal')} is used automatically, no driver needed"))
    if not out:
        out.append(Check("drivers", "pass", "no NVIDIA, AMD or Apple GPU found, so no driver is needed (cpu tier)"))
    return out


_RESIDENTIAL = re.compile(
    r"(^|[.\-\d])(dsl|adsl|vdsl|cable|dyn|dynamic|dhcp|pool|ppp|pppoe|cpe|broadband|fios|ftth|fibre|fiber|res|resi|residential|home|client|cust|customer|user)([.\-\d]|$)",
    re.I,
)


def residential(rdns: str | None, jitter_ms: float | None) -> str | None:
    """Why a link looks residential, or None. Heuristic: the reverse DNS name, or jitter."""
    if rdns and _RESIDENTIAL.search(rdns):
        return f"its reverse DNS name ({rdns}) looks like a consumer ISP's"
    if jitter_ms is not None and jitter_ms > 30:
        return f"its latency varies by {jitter_ms:.0f} ms"
    return None


def check_network(tier: str, link: dict[str, Any] | None) -> Check:
    if link is None:
        return Check("network", "skip", "no control plane to measure latency and upload bandwidth against", "pass --control-plane URL")
    if link.get("error"):
        return Check("network", "fail", f"cannot reach the control plane: {link['error']}", "check the URL, your firewall and DNS (the node only needs outbound HTTPS)")
    lat, up = link.get("latency_ms"), link.get("upload_mbps")
    problems, fixes = [], []
    if lat is not None and lat > MAX_LATENCY_MS:
        problems.append(f"latency {lat:.0f} ms (over {MAX_LATENCY_MS} ms degrades streaming)")
        fixes.append("run the node closer to the control plane, or on a wired link")
    if up is not None and up < MIN_UPLOAD_MBPS:
        problems.append(f"upload {up:.0f} Mbps (minimum {MIN_UPLOAD_MBPS} Mbps symmetric)")
        fixes.append("a faster uplink; model downloads and streams need it")
    why = residential(link.get("rdns"), link.get("jitter_ms"))
    if why and rank(tier) <= rank(">=24gb"):
        problems.append(f"the link looks residential: {why}")
        fixes.append(f"datacenter connectivity is strongly preferred for the {tier} tier")
    summary = f"latency {lat:.0f} ms, upload {up:.0f} Mbps" if lat is not None and up is not None else "measured"
    if problems:
        return Check("network", "warn", "; ".join(problems), "; ".join(fixes))
    return Check("network", "pass", f"{summary} to the control plane")
