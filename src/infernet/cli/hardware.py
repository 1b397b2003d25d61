"""`infernet hardware`: what this machine is, its tier, and what it lacks."""

from __future__ import annotations

import json
import os
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from infernet import catalog, config, hardware
from infernet.cli.app import app, console, err

ICONS = {"pass": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[red]✗[/]", "skip": "[dim]-[/]"}


def saved_node() -> dict[str, Any]:
    return config.read_json(config.home() / "node.json")


def model_sizes(names: list[str]) -> list[tuple[str, float, float]]:
    """(name, GB at FP16, GB at Q4) for the models the node will keep, as the disk check wants."""
    out = []
    for name in names:
        m = catalog.get(name)
        if m is not None and m.id != "smollm2-135m-instruct":
            out.append((m.id, catalog.disk_gb(m, "fp16"), catalog.disk_gb(m, "q4_k_m")))
    return out


def run_detection(control_plane: str | None, models_dir: Path | None, models: list[str], *, quiet: bool = False) -> hardware.Report:
    from infernet.client.probe import measure_link

    spin = err.status("detecting hardware…") if not quiet and err.is_terminal else nullcontext()
    with spin:
        link = measure_link(control_plane) if control_plane else None
        return hardware.detect(models_dir, model_sizes=model_sizes(models), link=link)


def render(report: hardware.Report) -> None:
    d = report.to_dict()
    console.print(f"[bold]tier[/] [cyan]{d['tier']}[/]  ({d['tier_basis']['note']})", highlight=False)
    if report.gpus:
        table = Table("#", "vendor", "GPU", "VRAM (MiB)", "driver", "tier", box=None, pad_edge=False)
        for g in report.gpus:
            vram = f"{g.vram_mb}" + (" (unified, usable share)" if g.unified_memory else "")
            table.add_row(str(g.index), g.vendor, g.name, vram, g.driver or "?", g.tier)
        console.print(table)
    else:
        why = "; ".join(p.reason for p in report.probes)
        console.print(f"[dim]no GPU found ({why})[/]", highlight=False)
    cpu = d["cpu"]
    disk = d["disk"]
    osname = d["os"]["name"] + (" (WSL2)" if d["os"].get("wsl") == 2 else "")
    console.print(f"[bold]cpu[/]  {cpu['model']} · {cpu['cores']} cores / {cpu['threads']} threads", highlight=False)
    console.print(f"[bold]ram[/]  {d['ram_mb'] / 1024:.1f} GiB", highlight=False)
    console.print(f"[bold]disk[/] {disk['free_gb']:.0f} GB free of {disk['total_gb']:.0f} GB at {disk['path']} ({disk['kind']}{', ' + disk['device'] if disk['device'] else ''})", highlight=False)
    console.print(f"[bold]os[/]   {osname} · kernel {d['os']['kernel']}", highlight=False)
    if report.tensor_parallel:
        console.print(f"[bold]tensor parallel[/] {', '.join(report.tensor_parallel)} installed: identical GPUs may add up", highlight=False)
    console.print()
    for c in report.checks:
        console.print(f" {ICONS[c.status]} [bold]{c.name}[/] {c.message}", highlight=False)
        if c.fix and c.status != "pass":
            console.print(f"     [dim]→ {c.fix}[/]", highlight=False)


def diagnostics(report: hardware.Report) -> None:
    for p in report.probes:
        if p.status in ("failed", "none") or (p.status == "absent" and p.vendor != "apple"):
            err.print(f"[dim]{p.vendor}: {p.reason}[/]", highlight=False)


@app.command("hardware")
def hardware_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout; diagnostics on stderr.")] = False,
    control_plane: Annotated[Optional[str], typer.Option("--control-plane", "-c", help="Measure latency and upload to this control plane [default: the saved one].")] = None,
    models_dir: Annotated[Optional[Path], typer.Option("--models-dir", help="Where model weights live [default: INFERNET_HOME].")] = None,
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="A model this node will keep on disk (repeatable).")] = None,
) -> None:
    """Detect GPUs, RAM, disk and OS; name the tier; check the requirements."""
    saved = saved_node()
    control_plane = control_plane or os.environ.get("INFERNET_CONTROL_PLANE") or saved.get("control_plane")
    models = list(model or ([saved["model"]] if saved.get("model") else []))
    report = run_detection(control_plane, models_dir, models, quiet=as_json)
    if as_json:
        diagnostics(report)
        sys.stdout.write(json.dumps(report.to_dict()) + "\n")
        return
    render(report)
