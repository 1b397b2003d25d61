"""The one check for node-signed requests (`X-Infernet-Auth`), used by the node socket,
the probe and the node endpoints: signature and clock skew, then a nonce no replica has
seen before."""

from __future__ import annotations

from typing import Any

from infernet.control.store.nonces import NonceRepo
from infernet.protocol import auth


async def check_signed(nonces: NonceRepo, header: str | None, method: str, url: Any, body: bytes = b"") -> auth.SignedRequest:
    """Raises `auth.AuthError` saying why not. `url` is the request's Starlette URL."""
    target = url.path + (f"?{url.query}" if url.query else "")
    signed = auth.check_request(header, method, target, body)
    if not await nonces.use(signed.nonce, signed.pubkey):
        raise auth.AuthError("replayed nonce")
    return signed
