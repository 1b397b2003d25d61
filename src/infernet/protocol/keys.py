"""Node identity: secp256k1 keys with x-only public keys, shown as Nostr npub/nsec (NIP-19)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from coincurve import PrivateKey, PublicKeyXOnly

from infernet.protocol import bech32

_KEYS: dict[bytes, PrivateKey] = {}


@dataclass(frozen=True, slots=True)
class Identity:
    """A secp256k1 key pair. `pubkey` is the 32-byte x-only key as hex."""

    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) != 32:
            raise ValueError("a secret key is 32 bytes")
        try:
            if self.secret not in _KEYS:
                _KEYS[self.secret] = PrivateKey(self.secret)
        except Exception:
            raise ValueError("not a valid secp256k1 secret key (zero, or not below the curve order)") from None

    @classmethod
    def generate(cls) -> Identity:
        return cls(PrivateKey().secret)

    @classmethod
    def from_nsec(cls, nsec: str) -> Identity:
        hrp, raw = bech32.decode(nsec.strip())
        if hrp != "nsec" or len(raw) != 32:
            raise ValueError("not an nsec key")
        return cls(raw)

    @classmethod
    def from_hex(cls, secret_hex: str) -> Identity:
        try:
            raw = bytes.fromhex(secret_hex.strip())
        except ValueError:
            raise ValueError("not hex") from None
        if len(raw) != 32:
            raise ValueError("a secret key is 32 bytes")
        return cls(raw)

    @property
    def _key(self) -> PrivateKey:
        # Building a PrivateKey costs as much as a signature; keep one per identity.
        key = _KEYS.get(self.secret)
        if key is None:
            key = _KEYS[self.secret] = PrivateKey(self.secret)
        return key

    @property
    def pubkey(self) -> str:
        return self._key.public_key_xonly.format().hex()

    @property
    def npub(self) -> str:
        return npub_from_hex(self.pubkey)

    @property
    def nsec(self) -> str:
        return bech32.encode("nsec", self.secret)

    def sign(self, digest: bytes) -> str:
        """BIP-340 Schnorr signature over a 32-byte digest, hex encoded."""
        return self._key.sign_schnorr(digest, os.urandom(32)).hex()


def npub_from_hex(pubkey_hex: str) -> str:
    return bech32.encode("npub", bytes.fromhex(pubkey_hex))


def pubkey_from_npub(npub: str) -> str:
    hrp, raw = bech32.decode(npub.strip())
    if hrp != "npub" or len(raw) != 32:
        raise ValueError("not an npub key")
    return raw.hex()


def verify(pubkey_hex: str, digest: bytes, sig_hex: str) -> bool:
    """True when sig is a valid BIP-340 signature of digest by pubkey; never raises."""
    try:
        return PublicKeyXOnly(bytes.fromhex(pubkey_hex)).verify(bytes.fromhex(sig_hex), digest)
    except (ValueError, TypeError):
        return False


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def load_or_create(path: Path) -> Identity:
    """The identity file (mode 0600), created on first use. The first creator wins: replicas
    started together on one shared data directory each made a platform key, and the last
    write replaced a key another replica was already signing receipts with."""
    if path.exists():
        data = json.loads(path.read_text())
        return Identity.from_hex(data["secret"])
    ident = Identity.generate()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    save(tmp, ident)
    try:
        os.link(tmp, path)  # whole or not at all, and never over another's
    except FileExistsError:
        return load_or_create(path)
    finally:
        tmp.unlink()
    return ident


def save(path: Path, ident: Identity) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"secret": ident.secret.hex(), "pubkey": ident.pubkey, "npub": ident.npub}, fh)
    os.chmod(path, 0o600)
