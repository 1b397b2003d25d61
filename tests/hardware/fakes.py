"""Fake vendor tools: shell scripts on PATH that print recorded output, byte for byte."""

from __future__ import annotations

import shlex
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hardware"


def fixture(rel: str) -> Path:
    return FIXTURES / rel


class FakeTools:
    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.bin.mkdir(parents=True, exist_ok=True)
        self._n = 0

    def _file(self, text: str) -> Path:
        self._n += 1
        p = self.bin.parent / "out" / f"{self._n}.txt"
        p.parent.mkdir(exist_ok=True)
        p.write_text(text)
        return p

    def add(self, name: str, rules: list[tuple[str, str | Path, int]], *, sleep: float = 0, stream: str = "stdout") -> None:
        """rules: (shell glob over "$*", output text or fixture path, exit code), first match wins."""
        lines = ["#!/bin/sh"]
        if sleep:
            lines.append(f"sleep {sleep}")
        lines.append('case "$*" in')
        redirect = " >&2" if stream == "stderr" else ""
        for glob, out, rc in rules:
            path = out if isinstance(out, Path) else self._file(out)
            lines.append(f"  {glob}) cat {shlex.quote(str(path))}{redirect}; exit {rc};;")
        lines.append('  *) echo "fake: unexpected arguments: $*" >&2; exit 64;;')
        lines.append("esac")
        script = self.bin / name
        script.write_text("\n".join(lines) + "\n")
        script.chmod(0o755)

    def nvidia(self, csv: str, cuda: str | None = "12.4", xml: str | None = None) -> None:
        """nvidia-smi for a recorded --query-gpu CSV, with -q -x to match."""
        rows = fixture(f"nvidia/{csv}").read_text()
        body = fixture(f"nvidia/{xml}").read_text() if xml else nvsmi_xml(rows, cuda)
        self.add("nvidia-smi", [("*-q\\ -x*", body, 0), ("*--query-gpu=*", fixture(f"nvidia/{csv}"), 0)])


def nvsmi_xml(csv_rows: str, cuda: str | None) -> str:
    """`nvidia-smi -q -x` for the cards in a --query-gpu CSV, in the tool's own structure."""
    gpus = []
    driver = ""
    for line in csv_rows.strip().splitlines():
        idx, name, total, used, driver, uuid, *_ = (f.strip() for f in line.split(","))
        gpus.append(
            f'\t<gpu id="00000000:{0x17 + int(idx):02X}:00.0">\n\t\t<product_name>{name}</product_name>\n'
            f"\t\t<uuid>{uuid}</uuid>\n\t\t<minor_number>{idx}</minor_number>\n"
            f"\t\t<fb_memory_usage>\n\t\t\t<total>{total} MiB</total>\n\t\t\t<reserved>0 MiB</reserved>\n"
            f"\t\t\t<used>{used} MiB</used>\n\t\t\t<free>{int(total) - int(used)} MiB</free>\n\t\t</fb_memory_usage>\n"
            f"\t\t<bar1_memory_usage>\n\t\t\t<total>256 MiB</total>\n\t\t\t<used>1 MiB</used>\n\t\t\t<free>255 MiB</free>\n\t\t</bar1_memory_usage>\n\t</gpu>\n"
        )
    cuda_el = f"\t<cuda_version>{cuda}</cuda_version>\n" if cuda else ""
    return (
        '<?xml version="1.0" ?>\n<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v12.dtd">\n<nvidia_smi_log>\n'
        f"\t<timestamp>Tue Mar 12 10:41:07 2024</timestamp>\n\t<driver_version>{driver}</driver_version>\n{cuda_el}"
        f"\t<attached_gpus>{len(gpus)}</attached_gpus>\n" + "".join(gpus) + "\n</nvidia_smi_log>\n"
    )
