"""One node as `status` and `top` show it: its own status file, checked against the control
plane (signed with the node's key), and its earnings.

The file says what the node believes; the control plane says whether the network sees it.
When they disagree (the control plane went away and the node has not noticed yet), the
view says so rather than repeat the file.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from infernet.cli.homes import NodeHome
from infernet.client import Client, InfernetError
from infernet.node import identity_path
from infernet.node import status as node_status
from infernet.protocol import keys


def identity(nh: NodeHome) -> keys.Identity | None:
    path = identity_path(nh.path)
    if not path.exists():
        return None
    try:
        return keys.load_or_create(path)
    except (ValueError, KeyError, OSError):
        return None


def gather(nh: NodeHome, *, probe: bool = True, timeout: float = 2.0, earnings: bool = True) -> dict[str, Any]:
    """Everything `status` prints about one node, as plain data (also its `--json`)."""
    data = node_status.read(nh.path)
    cfg = nh.config()
    ident = identity(nh)
    running = node_status.live(data)
    url = data.get("control_plane") or cfg.get("control_plane")
    view: dict[str, Any] = {
        "node": nh.label, "index": nh.index, "home": str(nh.path), "log": str(nh.log),
        "id": ident.pubkey if ident else data.get("node_id") or None, "npub": ident.npub if ident else data.get("npub"),
        "running": running, "phase": data.get("phase") if running else "stopped" if data else "never started",
        "pid": data.get("pid") if running else None, "control_plane": url,
        "connected": bool(running and data.get("connected")), "connected_at": data.get("connected_at") or None,
        "problem": None,
        "backend": {
            "kind": data.get("backend") or cfg.get("backend"), "url": data.get("backend_url") or cfg.get("backend_url"),
            "ok": bool(running and data.get("backend_ok")), "detail": data.get("backend_detail") or "",
        },
        "models": data.get("models", []) if running else [],
        "jobs": {
            "active": data.get("active", 0) if running else 0, "capacity": data.get("capacity", 0),
            "done": data.get("jobs_done", 0), "failed": data.get("jobs_failed", 0),
        },
        "tokens_out": data.get("tokens_out", 0),
        "last_error": data.get("last_error") or "",
        "metrics_url": data.get("metrics_url") if running else None,
        "updated_at": data.get("updated_at"),
        "network": None, "earnings": None,
    }
    if running and not data.get("connected"):
        view["problem"] = f"connecting to {url}: {data.get('last_error') or 'no answer yet'}"
    if probe and ident is not None and url:
        _probe(view, ident, url, timeout, earnings)
    return view


def _probe(view: dict[str, Any], ident: keys.Identity, url: str, timeout: float, earnings: bool) -> None:
    from infernet.client.probe import whoami

    try:
        me = whoami(url, ident, timeout=timeout)
    except httpx.HTTPStatusError as exc:
        view["network"] = {"error": f"{url} answered {exc.response.status_code}"}
        return
    except httpx.HTTPError as exc:
        view["network"] = {"error": f"cannot reach {url}: {type(exc).__name__}"}
        if view["connected"]:
            view["connected"] = False
            view["problem"] = f"the control plane at {url} does not answer (the node will notice and reconnect)"
        return
    view["network"] = {k: me.get(k) for k in ("registered", "online", "heartbeats", "last_seen", "tier", "models")}
    if view["connected"] and not me.get("online"):
        view["connected"] = False
        view["problem"] = f"{url} does not list this node as online (it is reconnecting)"
    if earnings:
        try:
            with Client(url, None, timeout=timeout) as client:
                p = client.payments(ident, 0)
            view["earnings"] = {k: p[k] for k in ("unpaid_usdc", "paid_usdc", "earned_usdc", "receipts") if k in p}
        except InfernetError as exc:
            view["earnings"] = {"error": exc.message}


def healthy(view: dict[str, Any]) -> bool:
    return bool(view["running"] and view["connected"] and view["backend"]["ok"])


def ago(when: float | None, now: float | None = None) -> str:
    if not when:
        return "?"
    s = max(0, int((now or time.time()) - when))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"
