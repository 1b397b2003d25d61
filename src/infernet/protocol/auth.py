"""Signed node requests and frames.

Connect: the WebSocket upgrade carries `X-Infernet-Auth`, base64 of JSON
`{v, pubkey, created_at, nonce, sig}`, where sig is BIP-340 over
sha256("METHOD\\npath?query\\ncreated_at\\nnonce\\nsha256(body)"). The server checks version,
clock skew, signature, and that the nonce is unseen in the *shared* store.

Frames: after the handshake the control plane sends a random session id and a fresh
ephemeral public key. The node's first frame, its hello, is binary 64-byte BIP-340 signature |
8-byte big-endian sequence | frame JSON, signed over sha256(session | seq | frame). Every
later frame is 16-byte MAC | sequence | JSON: keyed BLAKE2b under a session key that both
sides derive by ECDH (the node's key with the ephemeral one), so it never travels. A frame
replayed into another session fails its signature or MAC; one replayed within its session
fails the strictly increasing sequence. No per-frame nonce store is needed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import struct
import time
from dataclasses import dataclass

from coincurve import PrivateKey, PublicKey, PublicKeyXOnly

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
TAG = 16  # bytes of a frame's MAC
_KEY_LABEL = b"infernet frame key v2"


def _lift(pubkey: str | bytes) -> PublicKey:
    """The point of an x-only key (BIP-340: the one with even y)."""
    raw = bytes.fromhex(pubkey) if isinstance(pubkey, str) else pubkey
    return PublicKey(b"\x02" + raw)


def _frame_key(shared: PublicKey, session: bytes) -> bytes:
    # Only the x coordinate: the node's point and its BIP-340 lift may differ in sign, and
    # so may the two sides' shared points, but never in x.
    return hashlib.sha256(_KEY_LABEL + session + shared.format(compressed=True)[1:]).digest()


def ephemeral() -> tuple[bytes, str]:
    """The control plane's key for one session: (secret, public key as hex, sent in Welcome)."""
    key = PrivateKey()
    return key.secret, key.public_key.format(compressed=True).hex()


def _mac(key: bytes, head: bytes, frame: bytes) -> bytes:
    return hashlib.blake2b(head + frame, key=key, digest_size=TAG).digest()


class FrameSigner:
    """The node's side of a session. The hello is signed with the node's key (BIP-340); every
    later frame carries a MAC under the session key, agreed by ECDH between the node's key and
    the control plane's ephemeral one (so never sent), a fraction of a signature's cost."""

    def __init__(self, ident: keys.Identity, session: bytes, ephemeral_pub: str) -> None:
        self._ident = ident
        self._session = session
        self._key = _frame_key(PublicKey(bytes.fromhex(ephemeral_pub)).multiply(ident.secret), session)
        self._seq = 0

    def seal_signed(self, frame: bytes) -> bytes:
        self._seq += 1
        head = _SEQ.pack(self._seq)
        return bytes.fromhex(self._ident.sign(keys.sha256(self._session + head + frame))) + head + frame

    def seal(self, frame: bytes) -> bytes:
        self._seq += 1
        head = _SEQ.pack(self._seq)
        return _mac(self._key, head, frame) + head + frame


class FrameVerifier:
    """The control plane's side: `open_signed` for the hello, `open` for the rest. Sequence
    numbers only rise, so a frame replayed within the session is refused; one replayed into
    another session fails its signature or MAC."""

    def __init__(self, pubkey: str, session: bytes, ephemeral_secret: bytes) -> None:
        self._pubkey = PublicKeyXOnly(bytes.fromhex(pubkey))  # parsed once, for the hello
        self._session = session
        self._key = _frame_key(_lift(pubkey).multiply(ephemeral_secret), session)
        self._seq = 0

    def _next(self, head: bytes) -> int:
        (seq,) = _SEQ.unpack(head)
        if seq <= self._seq:
            raise AuthError("replayed frame")
        return seq

    def open_signed(self, message: bytes) -> bytes:
        if len(message) < 72:
            raise AuthError("short frame")
        sig, head, frame = message[:64], message[64:72], message[72:]
        seq = self._next(head)
        try:
            good = self._pubkey.verify(sig, keys.sha256(self._session + head + frame))
        except (ValueError, TypeError):
            good = False
        if not good:
            raise AuthError("bad frame signature")
        self._seq = seq
        return frame

    def open(self, message: bytes) -> bytes:
        if len(message) < TAG + 8:
            raise AuthError("short frame")
        tag, head, frame = message[:TAG], message[TAG : TAG + 8], message[TAG + 8 :]
        seq = self._next(head)
        if not hmac.compare_digest(tag, _mac(self._key, head, frame)):
            raise AuthError("bad frame MAC")
        self._seq = seq
        return frame
