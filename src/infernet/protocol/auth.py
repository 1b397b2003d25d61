"""Signed node requests and frames.

Connect: the WebSocket upgrade carries `X-Infernet-Auth`, base64 of JSON
`{v, pubkey, created_at, nonce, sig}`, where sig is BIP-340 over
sha256("METHOD\\npath?query\\ncreated_at\\nnonce\\nsha256(body)"). The server checks version,
clock skew, signature, and that the nonce is unseen in the *shared* store.

Frames: after the handshake the control plane issues a random session id. Each node frame is
binary: 64-byte signature | 8-byte big-endian sequence | frame JSON, signed over
sha256(session | seq | frame). A frame replayed into another session fails the signature; a
frame replayed within its session fails the strictly increasing sequence. No per-frame nonce
store is needed.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import struct
import time
from dataclasses import dataclass

from infernet.protocol import keys

AUTH_HEADER = "x-infernet-auth"
AUTH_VERSION = 1
MAX_SKEW_S = 60


class AuthError(Exception):
    """A request or frame that must be rejected; the message says why."""


def _request_digest(method: str, target: str, created_at: int, nonce: str, body: bytes) -> bytes:
    body_hash = keys.sha256(body).hex()
    text = f"{method.upper()}\n{target}\n{created_at}\n{nonce}\n{body_hash}"
    return keys.sha256(text.encode())


def sign_request(ident: keys.Identity, method: str, target: str, body: bytes = b"", now: float | None = None) -> str:
    created_at = int(now if now is not None else time.time())
    nonce = os.urandom(16).hex()
    sig = ident.sign(_request_digest(method, target, created_at, nonce, body))
    payload = {"v": AUTH_VERSION, "pubkey": ident.pubkey, "created_at": created_at, "nonce": nonce, "sig": sig}
    return base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


@dataclass(frozen=True, slots=True)
class SignedRequest:
    pubkey: str
    created_at: int
    nonce: str


def check_request(header: str | None, method: str, target: str, body: bytes = b"", now: float | None = None) -> SignedRequest:
    """Verify everything but nonce freshness, which needs the shared store."""
    if not header:
        raise AuthError("missing X-Infernet-Auth header")
    try:
        data = json.loads(base64.b64decode(header, validate=True))
        v, pubkey, created_at, nonce, sig = (data[k] for k in ("v", "pubkey", "created_at", "nonce", "sig"))
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise AuthError("malformed X-Infernet-Auth header") from None
    if v != AUTH_VERSION:
        raise AuthError(f"unsupported auth version {v!r}")
    if not isinstance(created_at, int) or not isinstance(nonce, str) or not 16 <= len(nonce) <= 128:
        raise AuthError("malformed X-Infernet-Auth header")
    now = now if now is not None else time.time()
    if abs(now - created_at) > MAX_SKEW_S:
        raise AuthError("request timestamp outside the allowed clock skew (60 s); check the node's clock")
    if not isinstance(pubkey, str) or not keys.verify(pubkey, _request_digest(method, target, created_at, nonce, body), str(sig)):
        raise AuthError("bad signature")
    return SignedRequest(pubkey, created_at, nonce)


_SEQ = struct.Struct(">Q")


class FrameSigner:
    def __init__(self, ident: keys.Identity, session: bytes) -> None:
        self._ident = ident
        self._session = session
        self._seq = 0

    def seal(self, frame: bytes) -> bytes:
        self._seq += 1
        head = _SEQ.pack(self._seq)
        sig = bytes.fromhex(self._ident.sign(keys.sha256(self._session + head + frame)))
        return sig + head + frame


class FrameVerifier:
    def __init__(self, pubkey: str, session: bytes) -> None:
        self._pubkey = pubkey
        self._session = session
        self._seq = 0

    def open(self, message: bytes) -> bytes:
        if len(message) < 72:
            raise AuthError("short frame")
        sig, head, frame = message[:64], message[64:72], message[72:]
        (seq,) = _SEQ.unpack(head)
        if seq <= self._seq:
            raise AuthError("replayed frame")
        if not keys.verify(self._pubkey, keys.sha256(self._session + head + frame), sig.hex()):
            raise AuthError("bad frame signature")
        self._seq = seq
        return frame
