"""`infernet start | stop | status | logs`: the node daemon on this machine."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import Annotated, Optional

import typer

from infernet import config, logs
from infernet.backends import CHOICES
from infernet.cli.app import LogFormatOpt, app, console, fail


@app.command()
def start(
    control_planes: Annotated[Optional[list[str]], typer.Option("--control-plane", "-c", envvar="INFERNET_CONTROL_PLANE", help="Control plane URL; repeat it (or separate with commas) for several replicas of one network: the node moves to another when its replica goes away.")] = None,
    backend: Annotated[str, typer.Option("--backend", "-b", help=f"One of: {', '.join(CHOICES)}. auto: probe the engines' default ports.")] = "auto",
    backend_url: Annotated[Optional[str], typer.Option("--backend-url", help="Engine URL; default: its usual port.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Serve only this model.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="A name for this node.")] = None,
    capacity: Annotated[Optional[int], typer.Option("--capacity", min=1, help="Jobs at once; default: what the engine says.")] = None,
    price: Annotated[Optional[str], typer.Option("--price", help="Own rates IN:OUT in USDC per million tokens, e.g. 0.02:0.08; the control plane clamps them into its bounds.")] = None,
    foreground: Annotated[bool, typer.Option("--foreground", "-f", help="Stay in the foreground.")] = False,
    metrics_port: Annotated[Optional[int], typer.Option("--metrics-port", min=0, max=65535, help="Serve Prometheus /metrics on this port (0: any free one); default: off.")] = None,
    metrics_host: Annotated[str, typer.Option("--metrics-host", help="Address for --metrics-port.")] = "127.0.0.1",
    log_format: LogFormatOpt = "text",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run a node: connect out to a control plane and serve jobs (no inbound port needed)."""
    if backend not in CHOICES:
        fail(f"unknown backend {backend!r}", f"choose one of {', '.join(CHOICES)}")
    home = config.home()
    saved = config.read_json(home / "node.json")
    control_plane = ",".join(u.strip() for c in control_planes or () for u in c.split(",") if u.strip()) or saved.get("control_plane")
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
        for flag, value in (("--backend-url", backend_url), ("--model", model), ("--name", name), ("--capacity", capacity), ("--price", price),
                            ("--metrics-port", metrics_port), ("--metrics-host", metrics_host if metrics_port is not None else None), ("--log-format", log_format)):
            if value is not None and value != "":
                args += [flag, str(value)]
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        pid_file.write_text(str(proc.pid))
        console.print(f"node started (pid {proc.pid}); logs in {home / 'node.log'}; `infernet status` to check it")
        return
    logs.setup(logging.DEBUG if verbose else logging.INFO, log_format)
    from infernet.node import run_foreground

    run_foreground(control_url=control_plane, backend_kind=backend, backend_url=backend_url, model=model, name=name, price=rates, home=home, capacity=capacity,
                   metrics_port=metrics_port, metrics_host=metrics_host)


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
    from infernet.node.status import pid_alive

    try:
        return pid_alive(int(pid_file.read_text()))
    except (FileNotFoundError, ValueError):
        return False


@app.command()
def stop() -> None:
    """Stop the node started by `infernet start`."""
    from infernet.node import status as node_status

    home = config.home()
    pid_file = home / "node.pid"
    if not _alive(pid_file):
        if node_status.live(node_status.read(home)):
            fail(f"the node running from {home} was not started by `infernet start` (pid {node_status.read(home)['pid']})",
                 "stop it where it was started: its terminal, or `systemctl --user stop infernet-node` for the service")
        if (home / "nodes.json").exists():
            fail(f"no node started by `infernet start` runs from {home}", "the nodes of `infernet up` stop with it: Ctrl-C in its terminal")
        fail("no node is running from this INFERNET_HOME")
    pid = int(pid_file.read_text())
    os.kill(pid, signal.SIGTERM)
    for _ in range(50):
        time.sleep(0.1)
        if not _alive(pid_file):
            break
    pid_file.unlink(missing_ok=True)
    console.print(f"node stopped (pid {pid})")


