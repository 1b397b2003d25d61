"""`infernet up`: the whole network on this machine, in the foreground.

The control plane runs in this process; the node runs as a child process that connects
back over the same WebSocket protocol a remote node uses. Ctrl-C stops both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.panel import Panel

from infernet import config, logs
from infernet.backends import CHOICES
from infernet.cli.app import LogFormatOpt, app, console, err, fail
from infernet.cli.homes import write_up_nodes

DEFAULT_PORT = 8787


@app.command()
def up(
    port: Annotated[int, typer.Option("--port", "-p", help="Control plane port.")] = DEFAULT_PORT,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    backend: Annotated[str, typer.Option("--backend", "-b", help=f"One of: {', '.join(CHOICES)}. auto: probe the engines' default ports.")] = "embedded",
    backend_url: Annotated[Optional[str], typer.Option("--backend-url", help="Engine URL; default: its usual port.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Serve only this model.")] = None,
    nodes: Annotated[int, typer.Option("--nodes", min=0, max=16, help="Local nodes to run (0: control plane only).")] = 1,
    log_format: LogFormatOpt = "text",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run a control plane and a node on this machine; print the URL and API key."""
    if backend not in CHOICES:
        fail(f"unknown backend {backend!r}", f"choose one of {', '.join(CHOICES)}")
    logs.setup(logging.INFO if verbose else logging.WARNING, log_format)
    home = config.home()
    home.mkdir(parents=True, exist_ok=True)
    if port and not _port_free(host, port):
        fail(f"port {port} on {host} is in use", "is another `infernet up` running? pick another with --port")
    saved = config.read_json(config.client_file(home))
    api_key = os.environ.get("INFERNET_API_KEY") or saved.get("api_key")
    if not api_key:
        from infernet.control.store import new_api_key

        api_key = new_api_key()
    try:
        asyncio.run(_up(home, host, port, api_key, backend, backend_url, model, nodes, log_format))
    except KeyboardInterrupt:
        pass


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


async def _up(home: Path, host: str, port: int, api_key: str, backend: str, backend_url: str | None, model: str | None, n_nodes: int, log_format: str) -> None:
    import uvicorn

    from infernet.control import ControlPlane, create_app
    from infernet.control.api.server import config as server_config

    class Server(uvicorn.Server):
        def capture_signals(self):  # type: ignore[no-untyped-def]
            return contextlib.nullcontext()  # we handle signals: stop the nodes first

    from infernet.control.errors import InfernetError

    try:
        cp = await ControlPlane.open(f"sqlite:///{home / 'control.db'}")
    except InfernetError as exc:  # another `up` holds this home's database
        fail(exc.message, "stop the other `infernet up`, or set another INFERNET_HOME")
    server = Server(server_config(create_app(cp, admin_key=api_key), host, port, timeout_graceful_shutdown=3))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
            fail("the control plane did not start")
        await asyncio.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    show_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{show_host}:{bound}"
    config.write_private(config.client_file(home), {"url": url, "api_key": api_key})

    children = [_Child(i, home, url, backend, backend_url, model, log_format) for i in range(n_nodes)]
    write_up_nodes(home, [(c.index, c.home, c.name) for c in children], url)
    engine_problem = await backend_problem(backend, backend_url, model) if children else None
    if engine_problem:
        warn_backend(backend, model, engine_problem)
    try:
        for child in children:
            await child.start()
        if children:
            with console.status(f"starting {n_nodes} node(s) on the {backend} backend (loading the model)…"):
                await _wait_for_nodes(cp, children, n_nodes, stop)
        if not stop.is_set():
            served = ", ".join(sorted(cp.placement.models())) or ("[yellow]none[/] (the engine serves no model: see the warning above)" if children else "none (no node: --nodes 0)")
            console.print(
                Panel.fit(
                    f"[bold]OpenAI base URL[/]  {url}/v1\n"
                    f"[bold]API key[/]          {api_key}\n"
                    f"[bold]Dashboard[/]        {url}/dashboard#key={api_key}\n"
                    f"[bold]Models[/]           {served}\n"
                    f"[bold]Data[/]             {home}\n\n"
                    f'Try: [cyan]infernet chat "What is 2+2?"[/]   (Ctrl-C stops the network)',
                    title="infernet is up",
                    border_style="green",
                ),
                highlight=False,
            )
            if children and not cp.placement.models() and not engine_problem:
                warn_backend(backend, model, children[0].status().get("last_error") or "the node advertises no model")
        supervisors = [asyncio.create_task(c.supervise(stop)) for c in children]
        await stop.wait()
        for s in supervisors:
            s.cancel()
    finally:
        console.print("stopping…")
        await asyncio.gather(*(c.stop() for c in children))
        server.should_exit = True
        await serving


async def backend_problem(kind: str, url: str | None, model: str | None, timeout: float = 3.0) -> str | None:
    """Why the engine the nodes will use cannot serve, or None. Asked before the nodes start,
    so `up` warns at once instead of printing an empty model list. The embedded engine is
    only looked for (loading it here would load the model twice); `auto` is the node's to
    resolve."""
    if kind == "auto":
        return None
    if kind == "embedded":
        from infernet.cli.setup import probe_engine

        ok, detail, _ = probe_engine("embedded")
        return None if ok else detail
    from infernet import backends

    try:
        engine = backends.create(kind, url, model)
    except (ImportError, ValueError) as exc:
        return str(exc)
    try:
        health = await asyncio.wait_for(engine.health(), timeout)
    except Exception as exc:  # an engine that hangs or answers nonsense cannot serve either
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    finally:
        await engine.aclose()
    return None if health.ok else health.detail


def warn_backend(kind: str, model: str | None, problem: str) -> None:
    from infernet import catalog

    h = catalog.engine_help(kind, catalog.get(model or ""))
    if "no model" in problem:
        fix = "give it a model: `infernet model pull <name>`" + (f" (or `{h['pull']}`)" if h.get("pull") else "")
    else:
        fix = f"start the engine (`{h.get('run', kind)}`; to install it: {h.get('get', 'see docs/backends.md')}), or point at it with --backend-url"
    err.print(f"[bold yellow]warning:[/] the {kind} backend cannot serve: {problem}", highlight=False)
    err.print(f"[dim]→ {fix}. The node keeps trying and advertises models as soon as the engine has them.[/]", highlight=False)


async def _wait_for_nodes(cp: object, children: list[_Child], n: int, stop: asyncio.Event) -> None:
    deadline = time.monotonic() + 180
    while len(cp.sessions.nodes) < n and not stop.is_set():  # type: ignore[attr-defined]
        for child in children:
            if child.proc is not None and child.proc.returncode is not None:
                tail = child.log_tail()
                fail(f"node {child.index} exited with code {child.proc.returncode}:\n{tail}", f"full log: {child.log_path}")
        if time.monotonic() > deadline:
            fail("the node did not connect within 180 s", f"see its log: {children[0].log_path}")
        await asyncio.sleep(0.05)


class _Child:
    """A local node process, restarted if it dies while the network is up."""

    def __init__(self, index: int, home: Path, url: str, backend: str, backend_url: str | None, model: str | None, log_format: str = "text") -> None:
        self.index = index
        self.name = f"local-{index}"
        self.home = home / "nodes" / str(index)
        self.log_path = self.home / "node.log"
        self.args = [sys.executable, "-m", "infernet", "start", "--foreground", "-c", url, "-b", backend, "--name", self.name, "--log-format", log_format]
        for flag, value in (("--backend-url", backend_url), ("--model", model)):
            if value:
                self.args += [flag, value]
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        env = {**os.environ, "INFERNET_HOME": str(self.home)}
        self.proc = await asyncio.create_subprocess_exec(*self.args, stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL, env=env)
        log.close()

    def status(self) -> dict:
        from infernet.node import read_status

        return read_status(self.home)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    async def supervise(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            assert self.proc is not None
            code = await self.proc.wait()
            if stop.is_set():
                return
            console.print(f"[yellow]node {self.index} exited (code {code}); restarting it[/]")
            await asyncio.sleep(1.0)
            await self.start()

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
