from __future__ import annotations

import base64
import json
import time

import pytest

from infernet.protocol import auth, bech32, keys


def test_nip19_vectors():
    # From NIP-19.
    assert keys.npub_from_hex("7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e") == "npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg"
    ident = keys.Identity.from_nsec("nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5")
    assert ident.secret.hex() == "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa"
    assert keys.Identity.from_nsec(ident.nsec) == ident


def test_bech32_rejects_corruption():
    npub = keys.Identity.generate().npub
    bad = npub[:-1] + ("q" if npub[-1] != "q" else "p")
    with pytest.raises(ValueError):
        bech32.decode(bad)
    with pytest.raises(ValueError):
        keys.pubkey_from_npub(keys.Identity.generate().nsec)


def test_identity_file_is_private(tmp_path):
    path = tmp_path / "id.json"
    a = keys.load_or_create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert keys.load_or_create(path) == a


def test_signed_request_checks():
    ident = keys.Identity.generate()
    header = auth.sign_request(ident, "GET", "/api/v1/nodes/connect")
    assert auth.check_request(header, "GET", "/api/v1/nodes/connect").pubkey == ident.pubkey
    with pytest.raises(auth.AuthError, match="signature"):
        auth.check_request(header, "GET", "/other/path")
    old = auth.sign_request(ident, "GET", "/x", now=time.time() - 120)
    with pytest.raises(auth.AuthError, match="skew"):
        auth.check_request(old, "GET", "/x")
    data = json.loads(base64.b64decode(header))
    data["pubkey"] = keys.Identity.generate().pubkey
    with pytest.raises(auth.AuthError, match="signature"):
        auth.check_request(base64.b64encode(json.dumps(data).encode()).decode(), "GET", "/api/v1/nodes/connect")
    for junk in (None, "", "!!!", base64.b64encode(b"[1]").decode()):
        with pytest.raises(auth.AuthError):
            auth.check_request(junk, "GET", "/x")
