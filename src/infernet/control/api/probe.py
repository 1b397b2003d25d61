"""Endpoints a node (or `infernet setup`/`doctor`) uses to learn about its link and itself.

- `GET  /api/v1/probe/ping`: an empty answer, for round-trip latency.
- `POST /api/v1/probe/upload`: swallows up to 32 MiB and says how long it took to arrive,
  for upload bandwidth. The answer also names the address the request came from and its
  reverse DNS name, which the network check uses to spot residential links.
- `GET  /api/v1/probe/whoami`: signed with the node's key (the `X-Infernet-Auth` header);
  what the control plane knows about that node: registered, online, tier, heartbeats.

Ping and upload need no key: they reveal nothing but the caller's own address, and the
upload is bounded. Whoami needs the node's own signature.
"""

from __future__ import annotations

import asyncio
import socket
import time
from functools import lru_cache
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from infernet.control.api.deps import plane
from infernet.control.errors import BadSignature, PayloadTooLarge
from infernet.control.nodes.auth import check_signed
from infernet.protocol import auth

MAX_UPLOAD = 32 * 1024 * 1024


def _json(data: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status_code=status, media_type="application/json", headers={"Cache-Control": "no-store"})


@lru_cache(maxsize=1024)
def _rdns_blocking(ip: str) -> str | None:
    try:
        return socket.gethostbyaddr(ip)[0]
    except (OSError, UnicodeError):
        return None


async def _rdns(ip: str | None) -> str | None:
    if not ip:
        return None
    try:
        return await asyncio.wait_for(asyncio.to_thread(_rdns_blocking, ip), 1.0)
    except TimeoutError:
        return None


async def ping(request: Request) -> Response:
    return _json({"t": time.time()})


async def upload(request: Request) -> Response:
    size = 0
    first = last = None
    async for chunk in request.stream():
        if not chunk:
            continue
        now = time.perf_counter()
        first = first or now
        last = now
        size += len(chunk)
        if size > MAX_UPLOAD:
            raise PayloadTooLarge(f"Send at most {MAX_UPLOAD} bytes to the upload probe.")
    ip = request.client.host if request.client else None
    return _json({"bytes": size, "server_s": (last - first) if first and last else 0.0, "client_ip": ip, "rdns": await _rdns(ip)})


async def whoami(request: Request) -> Response:
    cp = plane(request)
    try:
        signed = await check_signed(cp.store.nonces, request.headers.get(auth.AUTH_HEADER), "GET", request.url)
    except auth.AuthError as exc:
        raise BadSignature(f"{exc}: sign this request with the node's key", code="bad_signature") from None
    await cp.sessions.registry.flush()
    row = await cp.store.nodes.get(signed.pubkey)
    conn = cp.sessions.nodes.get(signed.pubkey)
    return _json(
        {
            "node_id": signed.pubkey,
            "registered": row is not None,
            "online": conn is not None,
            "name": row["name"] if row else None,
            "tier": row["tier"] if row else None,
            "backend": row["backend"] if row else None,
            "models": [m["name"] for m in row["models"]] if row else [],
            "hardware": row["hardware"] if row else None,
            "heartbeats": getattr(conn, "heartbeats", 0) if conn else 0,
            "last_seen": conn.seen_at() if conn else row["last_seen"] if row else None,
        }
    )


routes = [
    Route("/api/v1/probe/ping", ping),
    Route("/api/v1/probe/upload", upload, methods=["POST"]),
    Route("/api/v1/probe/whoami", whoami),
]
