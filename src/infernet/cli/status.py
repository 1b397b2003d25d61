"""`infernet status`: is the node connected, is its engine up, what does it serve, what has
it done and earned. Right the moment something changes (see node/status.py and
cli/nodeview.py); exit code 0 only when every node shown is connected with its engine up."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from infernet.cli import homes, nodeview
from infernet.cli.app import app, console
from infernet.cli.render import print_json


@app.command()
def status(
    node: homes.NodeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="The same as JSON on stdout.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for the control plane.")] = 2.0,
) -> None:
    """Is the node connected, is its engine up, what does it serve and earn?"""
    views = [nodeview.gather(nh, timeout=timeout) for nh in homes.select(node, several=True)]
    if as_json:
        print_json({"nodes": views})
    else:
        for i, view in enumerate(views):
            if i:
                console.print()
            show(view)
    raise typer.Exit(0 if all(nodeview.healthy(v) for v in views) else 1)


def _line(name: str, text: str) -> None:
    console.print(f"  [bold]{name:<9}[/] {text}", highlight=False, soft_wrap=True)


def show(v: dict[str, Any]) -> None:
    console.print(f"[bold]{v['node']}[/]  {v['npub'] or '(no identity yet)'}", highlight=False, soft_wrap=True)
    if not v["running"]:
        why = {"never started": "never started from this home", "stopped": "not running"}[v["phase"]]
        _line("state", f"[red]{why}[/]")
        _line("fix", "start it with `infernet up`" if v["index"] is not None else "start it with `infernet start`")
    elif v["connected"]:
        _line("state", f"[green]connected[/] to {v['control_plane']} for {nodeview.ago(v['connected_at'])} (pid {v['pid']})")
    else:
        _line("state", f"[yellow]not connected[/]: {v['problem'] or v['last_error'] or 'no answer yet'} (pid {v['pid']})")
    b = v["backend"]
    if v["running"]:
        engine = f"{b['kind'] or '?'}" + (f" at {b['url']}" if b["url"] else "")
        if v["phase"] == "starting":
            _line("backend", f"{engine}: [yellow]starting[/] (loading the engine)")
        elif b["ok"]:
            _line("backend", f"{engine}: [green]up[/] ({b['detail']})")
        else:
            _line("backend", f"{engine}: [red]down[/]: {b['detail'] or v['last_error'] or 'no answer'}")
        _line("models", ", ".join(v["models"]) or "[yellow]none advertised[/]")
        j = v["jobs"]
        _line("jobs", f"{j['active']} active of {j['capacity'] or '?'} · {j['done']} done · {j['failed']} failed · {v['tokens_out']} tokens out")
    net = v["network"]
    if net and net.get("error"):
        _line("network", f"[yellow]{net['error']}[/]")
    elif net:
        seen = f", last seen {nodeview.ago(net['last_seen'])} ago" if net.get("last_seen") else ""
        state = "online" if net.get("online") else "offline" if net.get("registered") else "never registered"
        _line("network", f"the control plane lists it {state}, {net.get('heartbeats', 0)} heartbeat(s){seen}")
    e = v["earnings"]
    if e and "error" not in e:
        _line("earnings", f"{e['unpaid_usdc']} USDC unpaid · {e['paid_usdc']} paid · {e['earned_usdc']} earned over {e['receipts']} receipts")
    elif e:
        _line("earnings", f"[yellow]{e['error']}[/]")
    if v["metrics_url"]:
        _line("metrics", v["metrics_url"])
    _line("home", f"{v['home']}  [dim](log: {v['log']}; `infernet logs` shows it)[/]")
