"""A hand-driven node connection, for tests that forge, replay and misroute what a node sends."""

from __future__ import annotations

from typing import Any

import msgspec
import websockets

from infernet.node.daemon import CONNECT_PATH, ws_url
from infernet.protocol import auth, keys
from infernet.protocol.messages import Hello, ModelAd, Welcome, control_decoder, encode


def header(ident: keys.Identity, **kw: Any) -> str:
    return auth.sign_request(ident, "GET", CONNECT_PATH, **kw)


class RawNode:
    def __init__(self, ws: Any, ident: keys.Identity, welcome: Welcome) -> None:
        self.ws = ws
        self.ident = ident
        self.welcome = welcome
        self.signer = auth.FrameSigner(ident, bytes.fromhex(welcome.session), welcome.ephemeral)

    @classmethod
    async def connect(cls, url: str, ident: keys.Identity, auth_header: str | None = None) -> RawNode:
        ws = await websockets.connect(ws_url(url), additional_headers={auth.AUTH_HEADER: auth_header or header(ident)}, open_timeout=5)
        welcome = control_decoder.decode(await ws.recv())
        assert isinstance(welcome, Welcome)
        return cls(ws, ident, welcome)

    async def send(self, frame: msgspec.Struct) -> bytes:
        sealed = (self.signer.seal_signed if isinstance(frame, Hello) else self.signer.seal)(encode(frame))
        await self.ws.send(sealed)
        return sealed

    async def hello(self, models: tuple[str, ...] = ("rogue-model",), pubkey: str | None = None) -> None:
        await self.send(Hello(pubkey=pubkey or self.ident.pubkey, backend="raw", models=[ModelAd(name=m) for m in models], capacity=1, tier="cpu"))

    async def closed_code(self) -> int | None:
        """Wait for the control plane to hang up; its close code."""
        try:
            while True:
                await self.ws.recv()
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None

    async def close(self) -> None:
        await self.ws.close()
