"""The node's side of the control plane's probe endpoints: link quality and "who am I"."""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import httpx

from infernet.protocol import auth, keys

PING = "/api/v1/probe/ping"
UPLOAD = "/api/v1/probe/upload"
WHOAMI = "/api/v1/probe/whoami"


def measure_link(url: str, *, pings: int = 6, timeout: float = 5.0, budget_s: float = 3.0) -> dict[str, Any]:
    """Round-trip latency (median of pings on a warm connection) and upload bandwidth.

    Uploads grow from 1 MiB until one takes over half a second or the time budget is spent,
    so a fast link is measured on a big enough transfer and a slow one is not kept waiting.
    """
    base = url.rstrip("/")
    out: dict[str, Any] = {"url": base, "latency_ms": None, "jitter_ms": None, "upload_mbps": None, "client_ip": None, "rdns": None, "error": None}
    try:
        with httpx.Client(base_url=base, timeout=httpx.Timeout(timeout, connect=timeout)) as http:
            http.get(PING).raise_for_status()  # opens the connection: not counted
            rtts = []
            for _ in range(pings):
                t0 = time.perf_counter()
                http.get(PING).raise_for_status()
                rtts.append((time.perf_counter() - t0) * 1000)
            rtt = statistics.median(rtts)
            out["latency_ms"] = round(rtt, 2)
            out["jitter_ms"] = round(statistics.pstdev(rtts), 2)
            started, size, rate = time.perf_counter(), 1 << 20, None
            while True:
                body = os.urandom(size)  # incompressible, so no proxy can shrink it
                t0 = time.perf_counter()
                r = http.post(UPLOAD, content=body, headers={"Content-Type": "application/octet-stream"}, timeout=max(timeout, 30.0))
                elapsed = time.perf_counter() - t0
                r.raise_for_status()
                data = r.json()
                out["client_ip"], out["rdns"] = data.get("client_ip"), data.get("rdns")
                # The client's clock includes one round trip that carried no payload.
                seconds = max(elapsed - rtt / 1000, data.get("server_s") or 0.0, 1e-6)
                rate = size * 8 / seconds / 1e6
                if elapsed > 0.5 or size >= 32 << 20 or time.perf_counter() - started > budget_s:
                    break
                size = min(size * 4, 32 << 20)
            out["upload_mbps"] = round(rate, 1)
    except httpx.HTTPStatusError as exc:
        out["error"] = f"{exc.request.url} answered {exc.response.status_code} (is this an infernet control plane?)"
    except httpx.HTTPError as exc:
        out["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return out


def whoami(url: str, identity: keys.Identity, timeout: float = 5.0) -> dict[str, Any]:
    """What the control plane knows about this node (signed with its key). Raises httpx errors."""
    header = auth.sign_request(identity, "GET", WHOAMI)
    r = httpx.get(url.rstrip("/") + WHOAMI, headers={auth.AUTH_HEADER: header}, timeout=timeout)
    r.raise_for_status()
    return r.json()
