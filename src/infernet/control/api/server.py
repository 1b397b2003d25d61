"""The control plane's listener: uvicorn, with deadlines and bounds on what a connection may
hold before it has said what it wants.

uvicorn's HTTP protocol waits for a request head as long as the peer likes, and takes
headers of any size, so a connection that sends half a head, or an upgrade with a 20 KB
header, sits on a socket forever. `GuardedHttp` gives every head `HEAD_TIMEOUT_S` to arrive
(408), and refuses heads over `MAX_HEAD` bytes or a header over `MAX_FIELD` (431).
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_TIMEOUT_S = 10.0
MAX_HEAD = 32 * 1024
MAX_FIELD = 8 * 1024  # a node's X-Infernet-Auth is about 300 bytes; a bearer key about 50
WS_MAX_SIZE = 2**24  # node frames over 1 MiB travel as parts, so this is never reached honestly


class _Refused(Exception):
    pass


class GuardedHttp(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._refusal: tuple[int, str] | None = None

    def _arm(self) -> None:
        self._disarm()
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self._refusal = (408, "The request head did not arrive in time.")
            self.send_400_response("")

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(value) > MAX_FIELD:
            self._refusal = (431, f"The header {name.decode('latin-1')[:64]} is over {MAX_FIELD} bytes.")
            raise _Refused
        self._count(name + value)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def _count(self, data: bytes) -> None:
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD:
            self._refusal = (431, f"The request head is over {MAX_HEAD} bytes.")
            raise _Refused

    def send_400_response(self, msg: str) -> None:
        if self._refusal is None:
            return super().send_400_response(msg)
        status, text = self._refusal
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        body = text.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (status, reason, len(body), body)
        )
        self.transport.close()


def config(app: Any, host: str = "127.0.0.1", port: int = 8787, **kw: Any) -> uvicorn.Config:
    """The one uvicorn configuration every control-plane listener uses."""
    kw.setdefault("log_level", "warning")
    return uvicorn.Config(app, host=host, port=port, http=GuardedHttp, ws_max_size=WS_MAX_SIZE, ws_per_message_deflate=False, **kw)
