"""`infernet models recommend`: what this node can serve, how, and how fast."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer
from rich.table import Table

from infernet import catalog, hardware
from infernet.cli.app import console, fail
from infernet.cli.model import model_app
from infernet.cli.models import models_app

ENGINES = ("embedded", "ollama", "vllm", "sglang", "llamacpp")


def _tps(r: tuple[int, int | None] | None) -> str:
    if r is None:
        return "—"
    return f"{r[0]}+" if r[1] is None else f"{r[0]}–{r[1]}"


@model_app.command("recommend")
def recommend(
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
    engine: Annotated[Optional[str], typer.Option("--backend", "-b", help=f"Fit for this engine ({', '.join(ENGINES)}) [default: the tier's recommendation].")] = None,
    context: Annotated[Optional[int], typer.Option("--context", min=256, max=1_048_576, help="Context tokens to fit [default: 8192].")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Also list the models that do not fit.")] = False,
) -> None:
    """Which catalog models fit this node, at which quantization, on which backend."""
    if engine is not None and engine not in ENGINES:
        fail(f"unknown backend {engine!r}", f"choose one of {', '.join(ENGINES)}")
    report = hardware.detect(run_checks=False)
    fits = advise(report, engine, context)
    engines = catalog.engines_for(report.tier, report.vendor)
    if as_json:
        sys.stdout.write(json.dumps({"tier": report.tier, "vendor": report.vendor, "backends": engines, "why": catalog.backend_reason(report.tier), "models": [f.to_dict() for f in fits]}) + "\n")
        return
    console.print(f"[bold]tier[/] [cyan]{report.tier}[/] ({report.tier_basis['note']})", highlight=False)
    console.print(f"[bold]backend[/] {' or '.join(engines)}: {catalog.backend_reason(report.tier)}", highlight=False)
    table = Table(box=None, pad_edge=False)
    for col in ("model", "params", "backend", "quant", "needs", "max context", "tokens/s"):
        table.add_column(col, no_wrap=True)
    table.add_column("note")
    for f in fits:
        if not f.fits and not show_all:
            continue
        style = None if f.fits else "dim"
        need = f"{f.need.gib:.1f} GiB" if f.need else "—"
        notes = [n for n in (f.notes[1:] if f.fits else f.notes) if n != f.model.note]
        table.add_row(f.model.id, f"{f.model.params_b:g}B", f.engine or "—", f.quant or "does not fit", need, str(f.max_context) if f.fits else "—", _tps(f.tokens_per_s), "; ".join(notes), style=style)
    console.print(table)
    hidden = sum(1 for f in fits if not f.fits)
    if hidden and not show_all:
        console.print(f"[dim]{hidden} more model(s) do not fit; --all lists them with what they would need[/]")


# `infernet models recommend` too: what the network serves and what this machine could add.
models_app.command("recommend")(recommend)


def advise(report: hardware.Report, engine: str | None = None, context: int | None = None) -> list[catalog.Fit]:
    cc = next((g.compute_capability for g in report.gpus if f"{g.vendor}:{g.index}" in report.tier_basis["gpus"]), None)
    return catalog.recommend(report.tier, report.vendor, report.tier_basis["vram_mb"], report.ram_mb, engine=engine, context=context, compute_capability=cc)
