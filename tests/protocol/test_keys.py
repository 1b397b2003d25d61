"""Our keys and signatures against an independent Nostr implementation (nostr-sdk, Rust)."""

from __future__ import annotations

import hashlib
import json

import nostr_sdk as nostr
import pytest

from infernet.protocol import keys


def _nip01_id(pubkey: str, created_at: int, kind: int, tags: list, content: str) -> bytes:
    return hashlib.sha256(json.dumps([0, pubkey, created_at, kind, tags, content], separators=(",", ":"), ensure_ascii=False).encode()).digest()


@pytest.mark.parametrize("seed", range(5))
def test_npub_nsec_and_pubkey_match_nostr_sdk(seed):
    ident = keys.Identity.generate()
    theirs = nostr.Keys.parse(ident.nsec)
    assert theirs.public_key().to_hex() == ident.pubkey
    assert theirs.public_key().to_bech32() == ident.npub
    assert theirs.secret_key().to_bech32() == ident.nsec
    assert keys.pubkey_from_npub(nostr.PublicKey.parse(ident.npub).to_bech32()) == ident.pubkey
    # and the other way: keys nostr-sdk made, read by us
    fresh = nostr.Keys.generate()
    ours = keys.Identity.from_nsec(fresh.secret_key().to_bech32())
    assert ours.pubkey == fresh.public_key().to_hex() and ours.npub == fresh.public_key().to_bech32()


def test_nostr_sdk_accepts_our_signatures_and_we_accept_theirs():
    ident = keys.Identity.generate()
    content = "infernet ✓ cross-check"
    created = 1_700_000_000
    event_id = _nip01_id(ident.pubkey, created, 1, [], content)
    event = {"id": event_id.hex(), "pubkey": ident.pubkey, "created_at": created, "kind": 1, "tags": [], "content": content, "sig": ident.sign(event_id)}
    assert nostr.Event.from_json(json.dumps(event)).verify()
    tampered = {**event, "sig": ident.sign(_nip01_id(ident.pubkey, created, 1, [], content + "!"))}
    assert not nostr.Event.from_json(json.dumps(tampered)).verify_signature()

    theirs = nostr.Keys.generate()
    signed = nostr.EventBuilder(nostr.Kind(1), content).finalize(theirs)
    data = json.loads(signed.as_json())
    assert bytes.fromhex(data["id"]) == _nip01_id(data["pubkey"], data["created_at"], 1, [], content)
    assert keys.verify(data["pubkey"], bytes.fromhex(data["id"]), data["sig"])
    assert not keys.verify(data["pubkey"], hashlib.sha256(b"other").digest(), data["sig"])
    assert not keys.verify(ident.pubkey, bytes.fromhex(data["id"]), data["sig"])


@pytest.mark.parametrize("bad", ["", "npub1xyz", "nsec1qqqq", "zz" * 32, "00" * 32, "ff" * 32, "00" * 31])
def test_bad_secrets_are_refused_with_value_error(bad):
    with pytest.raises(ValueError):
        keys.Identity.from_nsec(bad) if bad.startswith("nsec") else keys.Identity.from_hex(bad)


def test_an_npub_is_not_an_nsec():
    ident = keys.Identity.generate()
    with pytest.raises(ValueError):
        keys.Identity.from_nsec(ident.npub)
    assert not keys.verify("zz", b"\0" * 32, "00")  # never raises
