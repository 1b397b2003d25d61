"""`infernet setup`: from a bare machine to a registered, running node, one question at a time.

Hardware report, backend (found, or how to get it), model with a fit check, identity,
control plane, config (mode 0600), start the daemon, wait for the control plane to see its
first heartbeat. Re-running it is safe: the identity is kept, and the daemon is restarted
only when its configuration changed. `--yes` takes every default, for scripts.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import httpx
import typer
from rich.prompt import Confirm, Prompt
from rich.table import Table

from infernet import catalog, config
from infernet.backends import KINDS
from infernet.cli.app import app, console, fail
from infernet.cli.hardware import ICONS, run_detection

DEFAULT_CONTROL_PLANE = "http://127.0.0.1:8787"
ENGINE_ORDER = ("ollama", "vllm", "sglang", "llamacpp", "embedded")


def probe_engine(kind: str, url: str | None = None, timeout: float = 3.0) -> tuple[bool, str, list[str]]:
    """(running, detail, models served) for one engine; never raises."""
    if kind == "embedded":
        if importlib.util.find_spec("llama_cpp") is None:
            return False, "llama-cpp-python is not installed", []
        from infernet.backends.base import BackendError
        from infernet.backends.embedded import EMBEDDED_MODEL, find_gguf

        try:
            path = find_gguf()
        except BackendError as exc:
            return False, exc.message, []
        return True, f"built in ({path.name})", [EMBEDDED_MODEL]

    async def check() -> tuple[bool, str, list[str]]:
        from infernet import backends

        try:
            backend = backends.create(kind, url)
        except (ImportError, ValueError) as exc:
            return False, f"no adapter: {exc}", []
        try:
            health = await asyncio.wait_for(backend.health(), timeout)
            if not health.ok:
                return False, health.detail, []
            served = [m.name for m in await asyncio.wait_for(backend.models(), timeout)]
            return True, health.detail, served
        except Exception as exc:  # an engine that answers nonsense is "not running" here
            return False, f"{type(exc).__name__}: {exc}", []
        finally:
            await backend.aclose()

    return asyncio.run(check())


def _step(n: int, title: str) -> None:
    console.print(f"\n[bold cyan]{n}/7[/] [bold]{title}[/]")


def _ask(yes: bool, question: str, default: str, choices: list[str] | None = None) -> str:
    if yes:
        console.print(f"{question}: {default}", highlight=False)
        return default
    return Prompt.ask(question, default=default, choices=choices, console=console)


def _confirm(yes: bool, question: str, default: bool = True) -> bool:
    if yes:
        return default
    return Confirm.ask(question, default=default, console=console)


@app.command()
def setup(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Take every default; ask nothing (for scripts).")] = False,
    control_plane: Annotated[Optional[str], typer.Option("--control-plane", "-c", envvar="INFERNET_CONTROL_PLANE", help="Control plane URL.")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", "-b", help=f"One of: {', '.join(KINDS)}.")] = None,
    backend_url: Annotated[Optional[str], typer.Option("--backend-url", help="Engine URL; default: its usual port.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="The model to serve.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="A name for this node.")] = None,
    start_node: Annotated[bool, typer.Option("--start/--no-start", help="Start the daemon and wait for its first heartbeat.")] = True,
    wait_s: Annotated[float, typer.Option("--wait", min=1, help="Seconds to wait for the first heartbeat.")] = 90.0,
) -> None:
    """Set this machine up as a node: hardware, backend, model, identity, control plane, start."""
    if backend is not None and backend not in KINDS:
        fail(f"unknown backend {backend!r}", f"choose one of {', '.join(KINDS)}")
    home = config.home()
    saved = config.read_json(home / "node.json")

    _step(1, "Hardware")
    report = run_detection(None, None, [m for m in [model or saved.get("model")] if m])
    gpu = ", ".join(f"{g.name} ({g.vram_mb} MiB)" for g in report.gpus) or "no GPU"
    console.print(f"tier [bold cyan]{report.tier}[/] · {gpu} · {report.ram_mb / 1024:.0f} GiB RAM · {report.os['name']}", highlight=False)
    for c in report.checks:
        if c.name != "network":
            console.print(f" {ICONS[c.status]} {c.message}" + (f" [dim]→ {c.fix}[/]" if c.fix and c.status in ("warn", "fail") else ""), highlight=False)
    if any(c.status == "fail" for c in report.checks) and not _confirm(yes, "Some requirements fail. Continue anyway?", default=True):
        raise typer.Exit(1)

    _step(2, "Backend")
    recommended = catalog.engines_for(report.tier, report.vendor)
    console.print(f"recommended for {report.tier}: [bold]{' or '.join(recommended)}[/] ({catalog.backend_reason(report.tier)})", highlight=False)
    order = [k for k in recommended if k in KINDS] + [k for k in ENGINE_ORDER if k not in recommended]
    table = Table("backend", "status", "detail", box=None, pad_edge=False)
    found: dict[str, list[str]] = {}
    with console.status("looking for inference engines…"):
        for kind in order:
            url = backend_url if kind == backend else None
            ok, detail, served = probe_engine(kind, url)
            if ok:
                found[kind] = served
            table.add_row(kind, "[green]running[/]" if ok else "[dim]not found[/]", detail[:90])
    console.print(table)
    for kind in recommended:
        if kind not in found:
            h = catalog.engine_help(kind)
            console.print(f"[dim]get {kind}: {h.get('get', '')}; then: {h.get('run', '')}[/]", highlight=False)
    default_backend = backend or (saved.get("backend") if saved.get("backend") in found else None) or next(iter(found), "embedded")
    chosen = backend or _ask(yes, "Backend", default_backend, list(KINDS))
    if chosen not in found:
        h = catalog.engine_help(chosen)
        console.print(f"[yellow]{chosen} is not running[/]: {h.get('get', '')}; {h.get('run', '')}", highlight=False)
        if not _confirm(yes, f"Use {chosen} anyway (the node keeps retrying until it answers)?", default=False):
            fail(f"{chosen} is not running", f"start it, then run `infernet setup` again: {h.get('run', '')}")
    served = found.get(chosen, [])
    if chosen != backend:
        backend_url = None if chosen != saved.get("backend") else saved.get("backend_url")

    _step(3, "Model")
    fits = _fits(report)
    if served:
        table = Table("model", "fits", "quant", "needs", "context", box=None, pad_edge=False)
        for name_ in served:
            f = fits.get(catalog.get(name_).id) if catalog.get(name_) else None
            if f is None:
                table.add_row(name_, "[dim]?[/]", "—", "not in the catalog: no fit check", "—")
            else:
                table.add_row(name_, "[green]yes[/]" if f.fits else "[red]no[/]", f.quant or "—", f"{f.need.gib:.1f} GiB" if f.need else "—", str(f.max_context) if f.fits else "—")
        console.print(table)
    else:
        good = [f for f in fits.values() if f.fits and f.model.id != "smollm2-135m-instruct"]
        best = max(good, key=lambda f: f.model.params_b, default=None)
        if best is not None:
            console.print(f"{chosen} serves no model yet. This node fits up to [bold]{best.model.name}[/] at {best.quant}: {catalog.engine_help(chosen, best.model).get('pull', '')}", highlight=False)
    default_model = model or (saved.get("model") if saved.get("model") in served else None) or _best_served(served, fits) or (served[0] if served else "")
    if model is None and served:
        default_model = _ask(yes, "Model to serve", default_model, served if not yes else None)
    elif model is None:
        default_model = _ask(yes, "Model to serve (blank: whatever the backend serves)", default_model) if not yes else default_model
    chosen_model = default_model or None
    if chosen_model:
        entry = catalog.get(chosen_model)
        f = fits.get(entry.id) if entry else None
        if f is not None and not f.fits:
            console.print(f"[red]✗ {chosen_model} does not fit[/]: {'; '.join(f.notes)}", highlight=False)
            if yes or not Confirm.ask("Serve it anyway?", default=False, console=console):
                fail(f"{chosen_model} does not fit this node", "pick a smaller model (`infernet models recommend` lists what fits)")
        elif f is not None:
            console.print(f"[green]✓[/] {chosen_model} fits: {f.need.gib:.1f} GiB at {f.quant} with {f.context} tokens of context (up to {f.max_context})", highlight=False)
        if served and chosen_model not in served:
            console.print(f"[yellow]{chosen} does not serve {chosen_model} yet[/]: {catalog.engine_help(chosen, entry).get('pull', '')}", highlight=False)

    _step(4, "Identity")
    from infernet.node import identity_path
    from infernet.protocol import keys

    key_file = identity_path(home)
    existed = key_file.exists()
    ident = keys.load_or_create(key_file)
    console.print(f"{'kept' if existed else 'created'} node key {ident.npub}  [dim]({key_file}, mode 0600)[/]", highlight=False)

    _step(5, "Control plane")
    url = control_plane or saved.get("control_plane") or DEFAULT_CONTROL_PLANE
    for attempt in range(3):
        if not control_plane and attempt == 0 and not yes:
            url = Prompt.ask("Control plane URL", default=url, console=console)
        link = _reach(url)
        if link.get("error") is None:
            break
        console.print(f"[red]✗ cannot reach {url}[/]: {link['error']}", highlight=False)
        if yes or control_plane:
            fail(f"cannot reach the control plane at {url}", "check the URL (is `infernet up` running there?) and your network")
        url = Prompt.ask("Control plane URL", default=url, console=console)
    else:
        fail(f"cannot reach the control plane at {url}", "check the URL and your network, then run `infernet setup` again")
    from infernet.hardware.checks import check_network

    net = check_network(report.tier, link)
    console.print(f" {ICONS[net.status]} {net.message}" + (f" [dim]→ {net.fix}[/]" if net.fix and net.status != "pass" else ""), highlight=False)
    node_name = name or saved.get("name") or _ask(yes, "Node name", socket.gethostname())

    _step(6, "Configuration")
    new = {"control_plane": url.rstrip("/"), "backend": chosen, "backend_url": backend_url, "model": chosen_model, "name": node_name, "tier": report.tier}
    changed = any(saved.get(k) != v for k, v in new.items())
    config.write_private(home / "node.json", {**saved, **new})
    console.print(f"{'wrote' if changed else 'unchanged'} {home / 'node.json'} [dim](mode 0600)[/]", highlight=False)

    _step(7, "Start")
    if not start_node:
        console.print("not started (--no-start); run `infernet start` when ready")
        return
    from infernet.cli.node import _alive, start, stop

    running = _alive(home / "node.pid")
    if running and changed:
        console.print("configuration changed: restarting the node")
        stop()
        running = False
    if running:
        console.print(f"the node is already running (pid {(home / 'node.pid').read_text().strip()}) with this configuration")
    else:
        start(control_planes=[new["control_plane"]], backend=chosen, backend_url=backend_url, model=chosen_model, name=node_name, foreground=False, verbose=False)
    info = _wait_for_heartbeat(url, ident, home, wait_s)
    console.print(
        f"\n[bold green]✓ node online[/]: {ident.npub[:20]}… registered as [bold]{info.get('name')}[/], tier [bold]{info.get('tier')}[/], "
        f"serving {', '.join(info.get('models') or []) or 'nothing yet'}; {info.get('heartbeats')} heartbeat(s) seen by the control plane",
        highlight=False,
    )
    console.print("[dim]`infernet status` shows the node; `infernet doctor` checks everything end to end[/]")


def _fits(report: Any) -> dict[str, catalog.Fit]:
    from infernet.cli.recommend import advise

    return {f.model.id: f for f in advise(report)}


def _best_served(served: list[str], fits: dict[str, catalog.Fit]) -> str | None:
    scored = []
    for s in served:
        m = catalog.get(s)
        f = fits.get(m.id) if m else None
        if f is not None and f.fits:
            scored.append((m.params_b, s))  # type: ignore[union-attr]
    return max(scored)[1] if scored else None


def _reach(url: str) -> dict[str, Any]:
    from infernet.client.probe import measure_link

    try:
        r = httpx.get(url.rstrip("/") + "/healthz", timeout=5.0)
        r.raise_for_status()
    except httpx.HTTPError as exc:
        return {"error": str(exc) or type(exc).__name__}
    with console.status("measuring latency and upload bandwidth…"):
        return measure_link(url)


def _wait_for_heartbeat(url: str, ident: Any, home: Path, wait_s: float) -> dict[str, Any]:
    from infernet.cli.node import _alive
    from infernet.client.probe import whoami
    from infernet.node import read_status

    deadline = time.monotonic() + wait_s
    info: dict[str, Any] = {}
    with console.status("waiting for the control plane to see the node's first heartbeat…"):
        while time.monotonic() < deadline:
            try:
                info = whoami(url, ident)
            except httpx.HTTPError:
                info = {}
            if info.get("online") and info.get("heartbeats", 0) >= 1:
                return info
            if not _alive(home / "node.pid"):
                tail = _log_tail(home / "node.log")
                fail(f"the node exited before registering:\n{tail}", f"full log: {home / 'node.log'}")
            time.sleep(0.5)
    status = read_status(home)
    why = status.get("last_error") or ("connected, but no heartbeat yet" if info.get("online") else "not connected")
    fail(f"no heartbeat from the node within {wait_s:.0f} s ({why})", f"see {home / 'node.log'}; `infernet doctor` checks each part")


def _log_tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


__all__ = ["probe_engine", "setup"]
