"""What every route needs: the control plane, the caller's identity, JSON out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from infernet.control.errors import BadSignature, Forbidden, Unauthorized
from infernet.control.nodes.auth import check_signed
from infernet.control.store import KeyRecord
from infernet.protocol import auth

if TYPE_CHECKING:
    from infernet.control.plane import ControlPlane

Handler = Callable[[Request], Awaitable[Response]]


def plane(request: Request) -> ControlPlane:
    return request.app.state.cp


def json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(data), status_code=status, media_type="application/json", headers=headers)


async def api_key(request: Request) -> KeyRecord:
    """The caller's API key (`Authorization: Bearer ...`), hashed and looked up."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized()
    rec = await plane(request).store.keys.lookup(token.strip())
    if rec is None:
        raise Unauthorized("Invalid API key, or the key was revoked.")
    return rec


def keyed(fn: Callable[[Request, KeyRecord], Awaitable[Response]], *, admin: bool = False) -> Handler:
    """A route for API keys; `admin`: admin keys only."""

    async def handler(request: Request) -> Response:
        key = await api_key(request)
        if admin and not key.is_admin:
            raise Forbidden("This needs an admin key.")
        return await fn(request, key)

    return handler


def admin(fn: Callable[[Request, KeyRecord], Awaitable[Response]]) -> Handler:
    return keyed(fn, admin=True)


def node_signed(fn: Callable[[Request, str, bytes], Awaitable[Response]]) -> Handler:
    """A request signed by a node's key (X-Infernet-Auth); the key owns what it touches."""

    async def handler(request: Request) -> Response:
        body = await request.body()
        try:
            signed = await check_signed(plane(request).store.nonces, request.headers.get(auth.AUTH_HEADER), request.method, request.url, body)
        except auth.AuthError as exc:
            raise BadSignature(f"Node signature rejected: {exc}.") from None
        return await fn(request, signed.pubkey, body)

    return handler
