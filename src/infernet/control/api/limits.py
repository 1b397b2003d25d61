"""Bounds on what a client may send, enforced before any route reads it."""

from __future__ import annotations

from typing import Any

from infernet.control.api import errors
from infernet.control.errors import PayloadTooLarge

MAX_BODY = 40 * 1024 * 1024  # bodies are read whole; the probe's upload test sends up to 32 MiB


class BodyLimit:
    """ASGI middleware: refuse request bodies over `max_bytes` with a 413, read or declared."""

    def __init__(self, app: Any, max_bytes: int = MAX_BODY) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = PayloadTooLarge(f"The request body is over {self.max_bytes // (1024 * 1024)} MiB.")
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                return await errors.response(too_large)(scope, receive, send)
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise too_large  # the route's read raises it; the error handler answers 413
            return message

        await self.app(scope, counted, send)
