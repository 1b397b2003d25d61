"""Signed requests and frames, checked without a network."""

from __future__ import annotations

import time

import pytest

from infernet.protocol import auth, keys

PATH = "/api/v1/nodes/connect"


def test_a_good_request_passes_and_names_its_key():
    ident = keys.Identity.generate()
    signed = auth.check_request(auth.sign_request(ident, "POST", PATH, b"{}"), "POST", PATH, b"{}")
    assert signed.pubkey == ident.pubkey and len(signed.nonce) == 32


@pytest.mark.parametrize(
    "change, message",
    [
        ({"method": "PUT"}, "bad signature"),
        ({"target": PATH + "?a=1"}, "bad signature"),
        ({"body": b"{ }"}, "bad signature"),
        ({"skew": 61}, "clock skew"),
        ({"skew": -61}, "clock skew"),
    ],
)
def test_any_change_or_a_stale_clock_is_refused(change, message):
    ident = keys.Identity.generate()
    header = auth.sign_request(ident, "POST", PATH, b"{}")
    args = {"method": "POST", "target": PATH, "body": b"{}", "skew": 0, **change}
    with pytest.raises(auth.AuthError, match=message):
        auth.check_request(header, args["method"], args["target"], args["body"], now=time.time() + args["skew"])


def test_frames_bind_key_session_and_order():
    ident, session = keys.Identity.generate(), b"s" * 16
    signer = auth.FrameSigner(ident, session)
    one, two = signer.seal(b'{"t":"heartbeat","active":0}'), signer.seal(b'{"t":"heartbeat","active":1}')
    verifier = auth.FrameVerifier(ident.pubkey, session)
    assert verifier.open(one) == b'{"t":"heartbeat","active":0}'
    with pytest.raises(auth.AuthError, match="replayed"):
        verifier.open(one)
    assert verifier.open(two).endswith(b"1}")
    with pytest.raises(auth.AuthError, match="signature"):
        auth.FrameVerifier(ident.pubkey, b"t" * 16).open(one)  # another session
    with pytest.raises(auth.AuthError, match="signature"):
        auth.FrameVerifier(keys.Identity.generate().pubkey, session).open(one)  # another key
    tampered = one[:-2] + b"1}"
    with pytest.raises(auth.AuthError, match="signature"):
        auth.FrameVerifier(ident.pubkey, session).open(tampered)
    with pytest.raises(auth.AuthError, match="short"):
        verifier.open(b"x" * 10)
