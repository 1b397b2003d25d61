"""`infernet start | stop | status`: the node daemon on this machine."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import Annotated, Optional

import typer

from infernet import config
from infernet.backends import CHOICES
from infernet.cli.app import app, console, fail


@app.command()
def start(
    control_plane: Annotated[Optional[str], typer.Option("--control-plane", "-c", envvar="INFERNET_CONTROL_PLANE", help="Control plane URL.")] = None,
    backend: Annotated[str, typer.Option("--backend", "-b", help=f"One of: {', '.join(CHOICES)}. auto: probe the engines' default ports.")] = "auto",
    backend_url: Annotated[Optional[str], typer.Option("--backend-url", help="Engine URL; default: its usual port.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Serve only this model.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="A name for this node.")] = None,
    capacity: Annotated[Optional[int], typer.Option("--capacity", min=1, help="Jobs at once; default: what the engine says.")] = None,
    price: Annotated[Optional[str], typer.Option("--price", help="Own rates IN:OUT in USDC per million tokens, e.g. 0.02:0.08; the control plane clamps them into its bounds.")] = None,
    foreground: Annotated[bool, typer.Option("--foreground", "-f", help="Stay in the foreground.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run a node: connect out to a control plane and serve jobs (no inbound port needed)."""
    if backend not in CHOICES:
        fail(f"unknown backend {backend!r}", f"choose one of {', '.join(CHOICES)}")
    home = config.home()
    saved = config.read_json(home / "node.json")
    control_plane = control_plane or saved.get("control_plane")
    if not control_plane:
        fail("no control plane given", "pass --control-plane URL (or set INFERNET_CONTROL_PLANE)")
    config.write_private(home / "node.json", {**saved, "control_plane": control_plane, "backend": backend, "backend_url": backend_url, "model": model})
    rates = _parse_price(price) if price else None
    if not foreground:
        pid_file = home / "node.pid"
        if _alive(pid_file):
            fail(f"a node is already running from {home} (pid {pid_file.read_text().strip()})", "stop it with `infernet stop`")
        log = open(home / "node.log", "ab")
        args = [sys.executable, "-m", "infernet", "start", "--foreground", "-c", control_plane, "-b", backend]
        for flag, value in (("--backend-url", backend_url), ("--model", model), ("--name", name), ("--capacity", capacity), ("--price", price)):
            if value:
                args += [flag, str(value)]
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        pid_file.write_text(str(proc.pid))
        console.print(f"node started (pid {proc.pid}); logs in {home / 'node.log'}; `infernet status` to check it")
        return
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from infernet.node import run_foreground

    run_foreground(control_url=control_plane, backend_kind=backend, backend_url=backend_url, model=model, name=name, price=rates, home=home, capacity=capacity)


def _parse_price(text: str) -> dict[str, int]:
    from infernet.protocol.receipts import parse_usdc

    try:
        a, b = text.split(":")
        rates = {"input": parse_usdc(a), "output": parse_usdc(b)}
    except ValueError:
        fail(f"--price {text!r} is not IN:OUT", "give USDC per million tokens, e.g. --price 0.02:0.08")
    if min(rates.values()) < 0:
        fail("--price must not be negative")
    return rates


def _alive(pid_file) -> bool:  # type: ignore[no-untyped-def]
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return False
    return True


@app.command()
def stop() -> None:
    """Stop the node started by `infernet start`."""
    pid_file = config.home() / "node.pid"
    if not _alive(pid_file):
        fail("no node is running from this INFERNET_HOME")
    pid = int(pid_file.read_text())
    os.kill(pid, signal.SIGTERM)
    for _ in range(50):
        time.sleep(0.1)
        if not _alive(pid_file):
            break
    pid_file.unlink(missing_ok=True)
    console.print(f"node stopped (pid {pid})")


@app.command()
def status() -> None:
    """Is the node connected, and what has it served?"""
    from infernet.node import read_status

    data = read_status(config.home())
    if not data or time.time() - data.get("updated_at", 0) > 10:
        fail("no node is running from this INFERNET_HOME", "start one with `infernet start`")
    state = "[green]connected[/]" if data["connected"] else f"[yellow]connecting[/] ({data.get('last_error') or 'no answer yet'})"
    console.print(f"node {data['node_id'][:16]}… {state}")
    console.print(f"jobs done {data['jobs_done']}, failed {data['jobs_failed']}, active {data['active']}, tokens out {data['tokens_out']}")
