"""`infernet doctor`: is every part of this node working? One line per part, with the fix."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from typing import Annotated, Any, Optional

import httpx
import typer

from infernet import config
from infernet.cli import homes
from infernet.cli.app import app, console
from infernet.cli.hardware import ICONS


class _Report:
    def __init__(self) -> None:
        self.failed = False

    def line(self, status: str, name: str, message: str, fix: str = "") -> None:
        self.failed |= status == "fail"
        console.print(f" {ICONS[status]} [bold]{name:<13}[/] {message}", highlight=False)
        if fix and status != "pass":
            console.print(f"   {'':<13} [dim]→ {fix}[/]", highlight=False)


def _private(path: Any) -> bool:
    return stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0


@app.command()
def doctor(
    api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="INFERNET_API_KEY", help="A client API key, to test inference through the control plane.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds to allow each check.")] = 30.0,
    node: homes.NodeOpt = None,
) -> None:
    """Check the config, backend, control plane, daemon, registration and one real inference."""
    from infernet.node import identity_path, read_status
    from infernet.node import status as node_status
    from infernet.protocol import keys

    nh = homes.one(node)
    home = nh.path  # in `up`'s home: the home of `up`'s node
    starter = "`infernet up`" if nh.from_up else "`infernet start` (or `infernet setup`)"
    out = _Report()
    node_file = home / "node.json"
    cfg = config.read_json(node_file)

    # -- config
    if not cfg.get("control_plane") or not cfg.get("backend"):
        out.line("fail", "config", f"no node configuration in {node_file}", "start `infernet up` (it configures its node)" if nh.from_up else "run `infernet setup`")
        raise typer.Exit(1)
    key_file = identity_path(home)
    if not key_file.exists():
        out.line("fail", "config", f"no node key at {key_file}", "run `infernet setup` (it creates one)")
        raise typer.Exit(1)
    loose = [p for p in (node_file, key_file) if not _private(p)]
    if loose:
        out.line("fail", "config", f"{', '.join(map(str, loose))} readable by others (it holds the node key)", f"chmod 600 {' '.join(map(str, loose))}")
    else:
        out.line("pass", "config", f"{node_file}: {cfg['backend']} backend, model {cfg.get('model') or '(all served)'}, control plane {cfg['control_plane']}")
    ident = keys.load_or_create(key_file)
    url = cfg["control_plane"]

    # -- backend
    served = _backend(out, cfg, timeout)

    # -- control plane
    try:
        r = httpx.get(url.rstrip("/") + "/healthz", timeout=min(timeout, 10))
        r.raise_for_status()
        cp_ok = True
        out.line("pass", "control plane", f"{url} answers (version {r.json().get('version', '?')}, {r.json().get('nodes', '?')} node(s) online)")
    except (httpx.HTTPError, ValueError) as exc:
        cp_ok = False
        out.line("fail", "control plane", f"cannot reach {url}: {exc}", "check the URL in node.json (`infernet setup` to change it) and the network")

    # -- daemon
    status = read_status(home)
    # The status file names the daemon's pid: a node in the foreground or under `up` counts too.
    if not node_status.live(status):
        out.line("fail", "daemon", f"no node is running from {home}", f"start it with {starter}")
    elif not status.get("connected"):
        out.line("fail", "daemon", f"running but not connected: {status.get('last_error') or 'no answer yet'}", f"see {home / 'node.log'}")
    else:
        out.line("pass", "daemon", f"running (pid {status.get('pid')}), connected; {status.get('jobs_done', 0)} jobs done, {status.get('jobs_failed', 0)} failed")

    # -- registration
    from infernet.client.probe import whoami

    me: dict[str, Any] = {}
    if cp_ok:
        try:
            me = whoami(url, ident, timeout=min(timeout, 10))
        except httpx.HTTPError as exc:
            out.line("fail", "registered", f"the control plane could not say: {exc}", "upgrade the control plane, or check the node's clock (signatures allow 60 s of skew)")
        else:
            if not me.get("registered"):
                out.line("fail", "registered", f"the control plane has never seen {ident.npub[:20]}…", f"start the node: {starter}")
            elif not me.get("online"):
                out.line("fail", "registered", f"registered as {me.get('name')} (tier {me.get('tier')}) but offline", f"start the node: {starter}")
            else:
                out.line("pass", "registered", f"online as {me.get('name')}, tier {me.get('tier')}, {me.get('heartbeats')} heartbeat(s), serving {', '.join(me.get('models') or []) or 'nothing'}")
    else:
        out.line("skip", "registered", "the control plane is unreachable", "fix the control plane first")

    # -- inference
    model = cfg.get("model") or next(iter(me.get("models") or served or []), None)
    saved_key = config.read_json(config.client_file()).get("api_key")  # `up` leaves it in its own home
    key = api_key or saved_key
    if model is None:
        out.line("fail", "inference", "no model to try", "pull a model into the backend, or set one with `infernet setup`")
    elif key and cp_ok and me.get("online"):
        _through_network(out, url, key, model, ident.pubkey, timeout)
    elif served:
        _direct(out, cfg, model, timeout)
    else:
        out.line("skip", "inference", "nothing to run it on", "fix the backend first")
    raise typer.Exit(1 if out.failed else 0)


def _backend(out: _Report, cfg: dict[str, Any], timeout: float) -> list[str]:
    from infernet import backends

    async def check() -> tuple[bool, str, list[str]]:
        try:
            b = backends.create(cfg["backend"], cfg.get("backend_url"), cfg.get("model"))
        except (ImportError, ValueError) as exc:
            return False, str(exc), []
        try:
            h = await asyncio.wait_for(b.health(), timeout)
            if not h.ok:
                return False, h.detail, []
            return True, h.detail, [m.name for m in await asyncio.wait_for(b.models(), timeout)]
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}", []
        finally:
            await b.aclose()

    from infernet import catalog

    ok, detail, served = asyncio.run(check())
    h = catalog.engine_help(cfg["backend"], catalog.get(cfg.get("model") or ""))
    if not ok:
        out.line("fail", "backend", f"{cfg['backend']}: {detail}", f"{h.get('get', '')}; then `{h.get('run', '')}`")
        return []
    if cfg.get("model") and cfg["model"] not in served:
        out.line("fail", "backend", f"{cfg['backend']} runs but does not serve {cfg['model']} (it serves {', '.join(served) or 'nothing'})", h.get("pull", "pull the model into the backend"))
        return served
    out.line("pass", "backend", f"{detail}; serves {', '.join(served) or 'nothing'}")
    return served


def _through_network(out: _Report, url: str, key: str, model: str, node_id: str, timeout: float) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 8}
    t0 = time.perf_counter()
    try:
        with httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {key}"}, timeout=timeout) as http:
            r = http.post("/api/v1/jobs", json=body)
            if r.status_code >= 400:
                raise RuntimeError(r.json().get("error", {}).get("message", r.text))
            job = r.json()
            while job["status"] in ("queued", "assigned", "running") and time.perf_counter() - t0 < timeout:
                time.sleep(0.1)
                job = http.get(f"/api/v1/jobs/{job['id']}").json()
    except (httpx.HTTPError, RuntimeError, ValueError, KeyError) as exc:
        out.line("fail", "inference", f"through {url}: {exc}", "see the node log and `infernet status`")
        return
    took = time.perf_counter() - t0
    if job["status"] != "completed":
        out.line("fail", "inference", f"job {job['id']} ended {job['status']}: {(job.get('error') or {}).get('message', 'no reason given')}", "see the node log")
        return
    who = "this node" if job.get("node_id") == node_id else f"another node ({(job.get('node_id') or '?')[:12]}…)"
    tokens = (job.get("usage") or {}).get("completion_tokens", 0)
    out.line("pass", "inference", f"{model} answered {((job.get('result') or {}).get('text') or '').strip()[:40]!r} in {took:.2f} s through the control plane, served by {who} ({tokens} tokens)")


def _direct(out: _Report, cfg: dict[str, Any], model: str, timeout: float) -> None:
    from infernet import backends

    async def run() -> tuple[str, int]:
        b = backends.create(cfg["backend"], cfg.get("backend_url"), cfg.get("model"))
        text, tokens = "", 0
        try:
            stream = b.chat({"model": model, "messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 8})
            async for chunk in stream:
                text += chunk.text
                if chunk.usage is not None:
                    tokens = chunk.usage.completion_tokens
        finally:
            await b.aclose()
        return text, tokens

    t0 = time.perf_counter()
    try:
        text, tokens = asyncio.run(asyncio.wait_for(run(), timeout))
    except Exception as exc:
        out.line("fail", "inference", f"{cfg['backend']} failed a 8-token chat: {exc}", "see the engine's own log")
        return
    out.line("warn", "inference", f"{model} answered {text.strip()[:40]!r} ({tokens} tokens, {time.perf_counter() - t0:.2f} s) directly on the backend, not through the network", "pass --api-key (or set INFERNET_API_KEY) to test through the control plane")
