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


def _pair(ident=None, session=b"s" * 16):
    ident = ident or keys.Identity.generate()
    secret, public = auth.ephemeral()
    return ident, auth.FrameSigner(ident, session, public), auth.FrameVerifier(ident.pubkey, session, secret)


def test_the_hello_is_signed_and_later_frames_carry_a_mac_bound_to_key_session_and_order():
    ident, signer, verifier = _pair()
    hello = signer.seal_signed(b'{"t":"hello"}')
    assert len(hello) == 64 + 8 + 13 and verifier.open_signed(hello) == b'{"t":"hello"}'
    one, two = signer.seal(b'{"t":"heartbeat","active":0}'), signer.seal(b'{"t":"heartbeat","active":1}')
    assert len(one) == auth.TAG + 8 + 28  # a MAC, not a signature
    assert verifier.open(one) == b'{"t":"heartbeat","active":0}'
    with pytest.raises(auth.AuthError, match="replayed"):
        verifier.open(one)
    assert verifier.open(two).endswith(b"1}")
    three = signer.seal(b"{}")
    for other in (_pair(ident, b"t" * 16)[2], _pair(keys.Identity.generate())[2]):  # another session; another key
        with pytest.raises(auth.AuthError, match="MAC"):
            other.open(three)
    tampered = bytearray(three)
    tampered[-1] ^= 1
    with pytest.raises(auth.AuthError, match="MAC"):
        verifier.open(bytes(tampered))
    with pytest.raises(auth.AuthError, match="signature"):
        verifier.open_signed(signer.seal(b"{}") + b"x" * 50)  # a MAC'd frame is no signature
    with pytest.raises(auth.AuthError, match="short"):
        verifier.open(b"x" * 10)


def test_both_sides_agree_on_the_key_whatever_the_parity_of_the_nodes_point():
    for _ in range(32):  # about half the keys have an odd-y point that BIP-340 lifts to its negation
        _, signer, verifier = _pair()
        assert verifier.open(signer.seal(b"x")) == b"x"

