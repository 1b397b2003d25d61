"""`infernet top`: a live terminal view, for an operator on a headless server over SSH.

Of this machine's node(s) by default: connected, engine, jobs, tokens/s, load, GPU use,
earnings. Of the whole network with `--network` (an admin key): every node, jobs, tokens/s,
queue, free slots. `q` or Ctrl-C leaves; `--once` prints one frame (also what happens when
the output is not a terminal), `--json` one snapshot as JSON.

Rates are measured here, from the counters' change between frames, so they are what the
node or the network did lately, not an average since it started.
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import sys
import time
from collections.abc import Iterator
from typing import Annotated, Any, Optional

import httpx
import psutil
import typer
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from infernet.cli import homes, nodeview
from infernet.cli.app import app, console, fail, resolve_client
from infernet.cli.render import print_json
from infernet.client import Client, InfernetError

WINDOW_S = 10.0  # rates are over this much recent time
PROBE_S = 5.0  # the control plane is asked this often (a signed request each time)


class Rate:
    """A counter's rise per second over the last WINDOW_S."""

    def __init__(self) -> None:
        self.points: collections.deque[tuple[float, float]] = collections.deque()

    def add(self, value: float, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self.points.append((now, value))
        while len(self.points) > 2 and now - self.points[1][0] >= WINDOW_S:
            self.points.popleft()
        (t0, v0), (t1, v1) = self.points[0], self.points[-1]
        return max(0.0, (v1 - v0) / (t1 - t0)) if t1 > t0 else 0.0


def gpu_use() -> list[dict[str, Any]]:
    """Utilization and memory of each NVIDIA GPU, via nvidia-smi; [] where there is none."""
    from infernet.hardware._run import run_tool

    r = run_tool(["nvidia-smi", "--query-gpu=index,name,utilization.gpu,memory.used,memory.total", "--format=csv,noheader,nounits"], timeout=2.0)
    gpus = []
    for line in r.stdout.splitlines() if r.ok else []:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 5 and parts[0].isdigit():
            try:
                gpus.append({"index": int(parts[0]), "name": parts[1], "util_pct": float(parts[2]), "mem_used_mb": float(parts[3]), "mem_total_mb": float(parts[4])})
            except ValueError:
                continue
    return gpus


def machine() -> dict[str, Any]:
    """CPU (since the last call: the frame interval), load, memory, GPUs."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {"cpu_pct": psutil.cpu_percent(interval=None), "load": [round(x, 2) for x in load], "cores": psutil.cpu_count() or 1,
            "mem_pct": psutil.virtual_memory().percent, "gpus": gpu_use()}


def _bar(used: float, total: float, width: int = 20) -> Text:
    frac = 0.0 if total <= 0 else min(1.0, used / total)
    filled = round(frac * width)
    style = "green" if frac < 0.7 else "yellow" if frac < 0.9 else "red"
    return Text("█" * filled, style=style) + Text("░" * (width - filled), style="dim")


def _machine_panel(m: dict[str, Any]) -> Panel:
    t = Table.grid(padding=(0, 2))
    t.add_row("cpu", _bar(m["cpu_pct"], 100), f"{m['cpu_pct']:.0f}%  load {' '.join(map(str, m['load']))} on {m['cores']} cores")
    t.add_row("memory", _bar(m["mem_pct"], 100), f"{m['mem_pct']:.0f}%")
    for g in m["gpus"]:
        t.add_row(f"gpu {g['index']}", _bar(g["util_pct"], 100), f"{g['util_pct']:.0f}%  {g['mem_used_mb'] / 1024:.1f}/{g['mem_total_mb'] / 1024:.1f} GiB  {g['name']}")
    if not m["gpus"]:
        t.add_row("gpu", Text("-", style="dim"), Text("no NVIDIA GPU seen (nvidia-smi)", style="dim"))
    return Panel(t, title="machine", border_style="dim")


# -- this machine's nodes ---------------------------------------------------------------


class NodeWatch:
    def __init__(self, node: str | None) -> None:
        self.nodes = homes.select(node, several=True)
        self.rates = {n.path: (Rate(), Rate()) for n in self.nodes}  # tokens out, jobs ended
        self.remote: dict[Any, tuple[float, dict[str, Any]]] = {}

    def snapshot(self) -> dict[str, Any]:
        views = []
        now = time.monotonic()
        for nh in self.nodes:
            last = self.remote.get(nh.path)
            probe = last is None or now - last[0] >= PROBE_S
            v = nodeview.gather(nh, probe=probe, timeout=1.5)
            if probe:
                self.remote[nh.path] = (now, {"network": v["network"], "earnings": v["earnings"], "connected": v["connected"], "problem": v["problem"]})
            else:
                # Between probes: the file's word, unless the last probe found it wrong.
                remote = last[1]
                v.update(network=remote["network"], earnings=remote["earnings"])
                if not remote["connected"] and remote["problem"] and v["connected"]:
                    v.update(connected=False, problem=remote["problem"])
            tokens, jobs = self.rates[nh.path]
            v["tokens_per_s"] = round(tokens.add(v["tokens_out"], now), 2)
            v["jobs_per_min"] = round(60 * jobs.add(v["jobs"]["done"] + v["jobs"]["failed"], now), 1)
            views.append(v)
        return {"nodes": views, "machine": machine()}

    def render(self, snap: dict[str, Any]) -> Group:
        parts: list[Any] = []
        for v in snap["nodes"]:
            t = Table.grid(padding=(0, 2))
            if not v["running"]:
                state = Text("not running", style="red")
            elif v["connected"]:
                state = Text(f"connected {nodeview.ago(v['connected_at'])}", style="green")
            else:
                state = Text(f"not connected: {v['problem'] or v['last_error'] or 'no answer yet'}", style="yellow")
            t.add_row("state", state)
            b = v["backend"]
            t.add_row("engine", Text(f"{b['kind']} {'up' if b['ok'] else 'down'}" + (f": {b['detail']}" if b["detail"] else ""), style="green" if b["ok"] else "red"))
            t.add_row("models", ", ".join(v["models"]) or "-")
            j = v["jobs"]
            t.add_row("load", Group(_bar(j["active"], j["capacity"] or 1), Text(f"{j['active']} of {j['capacity'] or '?'} slots busy")))
            t.add_row("jobs", f"{j['done']} done · {j['failed']} failed · {v['jobs_per_min']}/min")
            t.add_row("tokens", f"{v['tokens_per_s']} tokens/s out · {v['tokens_out']} total")
            e = v["earnings"]
            t.add_row("earnings", f"{e['unpaid_usdc']} USDC unpaid · {e['earned_usdc']} earned · {e['receipts']} receipts" if e and "error" not in e else "-")
            title = f"{v['node']}  {v['npub'] or ''}"
            parts.append(Panel(t, title=title, title_align="left", border_style="green" if nodeview.healthy(v) else "yellow"))
        parts.append(_machine_panel(snap["machine"]))
        return Group(*parts)


# -- the network (admin) ----------------------------------------------------------------


def _metrics(text: str) -> dict[str, float]:
    """Sums of the control plane's series that the view needs, by a short name."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = collections.defaultdict(float)
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "infernet_jobs_total":
                out[f"jobs_{s.labels.get('status')}"] += s.value
                out["jobs"] += s.value
            elif s.name == "infernet_tokens_total":
                out[f"tokens_{s.labels.get('direction')}"] += s.value
            elif s.name in ("infernet_jobs_live", "infernet_slots_free", "infernet_nodes_online"):
                out[s.name.removeprefix("infernet_")] = s.value
    return out


class NetworkWatch:
    def __init__(self, url: str | None, api_key: str | None) -> None:
        self.url, key = resolve_client(url, api_key)
        self.client = Client(self.url, key, timeout=5.0)
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=5.0)
        self.rates = {"tokens": Rate(), "jobs": Rate()}

    def snapshot(self) -> dict[str, Any]:
        try:
            nodes = self.client.nodes()
            r = self.http.get("/metrics")
        except (InfernetError, httpx.HTTPError) as exc:
            message = exc.message if isinstance(exc, InfernetError) else str(exc)
            return {"error": message, "nodes": [], "totals": {}, "machine": machine()}
        if r.status_code in (401, 403):
            fail("the network view needs an admin key", "use the key `infernet up` printed (INFERNET_API_KEY), or watch this machine's node: `infernet top`")
        m = _metrics(r.text) if r.status_code == 200 else {}
        now = time.monotonic()
        busy = sum(n["active"] for n in nodes if n["status"] == "online")
        totals = {
            "nodes_online": sum(1 for n in nodes if n["status"] == "online"), "nodes": len(nodes),
            "jobs_completed": m.get("jobs_completed", 0), "jobs_failed": m.get("jobs_failed", 0), "jobs_cancelled": m.get("jobs_cancelled", 0),
            "running": busy, "queued": max(0, int(m.get("jobs_live", 0)) - busy), "slots_free": int(m.get("slots_free", 0)),
            "tokens_out": m.get("tokens_output", 0), "tokens_in": m.get("tokens_input", 0),
            "tokens_per_s": round(self.rates["tokens"].add(m.get("tokens_output", 0), now), 2),
            "jobs_per_min": round(60 * self.rates["jobs"].add(m.get("jobs", 0), now), 1),
        }
        return {"url": self.url, "nodes": nodes, "totals": totals, "machine": machine()}

    def render(self, snap: dict[str, Any]) -> Group:
        if snap.get("error"):
            return Group(Panel(Text(snap["error"], style="red"), title=f"network {self.url}"), _machine_panel(snap["machine"]))
        t = snap["totals"]
        head = Table.grid(padding=(0, 3))
        head.add_row(f"nodes {t['nodes_online']} online of {t['nodes']}", f"jobs {t['running']} running · {t['queued']} queued · {t['slots_free']} slots free",
                     f"{t['tokens_per_s']} tokens/s · {t['jobs_per_min']} jobs/min")
        head.add_row(f"completed {int(t['jobs_completed'])}", f"failed {int(t['jobs_failed'])} · cancelled {int(t['jobs_cancelled'])}",
                     f"tokens {int(t['tokens_in'])} in / {int(t['tokens_out'])} out")
        # A live view, so ids are cut to fit; `top --network --json` has them whole.
        table = Table(expand=True)
        for name in ("node", "id", "status"):
            table.add_column(name, no_wrap=True)
        table.add_column("models")
        for name in ("load", "decode tok/s", "last seen"):
            table.add_column(name, no_wrap=True)
        for n in sorted(snap["nodes"], key=lambda n: (n["status"] != "online", n["name"])):
            online = n["status"] == "online"
            table.add_row(n["name"] or "-", n["id"][:12], Text(n["status"], style="green" if online else "dim"), ", ".join(n["models"]) or "-",
                          f"{n['active']}/{n['capacity']}" if online else "-", f"{n.get('tokens_per_s', 0):g}" if online else "-", nodeview.ago(n.get("last_seen")) + " ago")
        return Group(Panel(head, title=f"network {self.url}", title_align="left"), table, _machine_panel(snap["machine"]))


@contextlib.contextmanager
def _keys() -> Iterator[Any]:
    """Single key presses from the terminal (no Enter needed), restored on the way out."""
    if not sys.stdin.isatty():
        yield None
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _pressed_q(fd: Any, wait: float) -> bool:
    if fd is None:
        time.sleep(wait)
        return False
    ready, _, _ = select.select([fd], [], [], wait)
    return bool(ready) and os.read(fd, 1) in (b"q", b"Q")


@app.command()
def top(
    network: Annotated[bool, typer.Option("--network", help="The whole network (needs an admin key), not this machine's node.")] = False,
    node: homes.NodeOpt = None,
    interval: Annotated[float, typer.Option("--interval", "-i", min=0.2, help="Seconds between frames.")] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One snapshot as JSON (full ids) and exit.")] = False,
    url: Annotated[Optional[str], typer.Option("--url", help="Control plane URL for --network [env INFERNET_URL].")] = None,
    api_key: Annotated[Optional[str], typer.Option("--api-key", help="Admin API key for --network [env INFERNET_API_KEY].")] = None,
) -> None:
    """A live view of the node (or with --network, of the network): jobs, tokens/s, load, GPU, earnings."""
    watch: NodeWatch | NetworkWatch = NetworkWatch(url, api_key) if network else NodeWatch(node)
    psutil.cpu_percent(interval=None)  # the first reading is meaningless: start the clock
    if as_json or once or not console.is_terminal:
        time.sleep(0.3)  # one frame: give the CPU reading something to measure
    if as_json:
        print_json(watch.snapshot())
        return
    if once or not console.is_terminal:
        console.print(watch.render(watch.snapshot()))
        return
    try:
        with _keys() as fd, Live(watch.render(watch.snapshot()), console=console, screen=True, auto_refresh=False) as live:
            while not _pressed_q(fd, interval):
                live.update(Group(watch.render(watch.snapshot()), Text("q quits", style="dim")), refresh=True)
    except KeyboardInterrupt:
        pass
