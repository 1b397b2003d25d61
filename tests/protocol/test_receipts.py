"""Receipts: canonical bytes, exact money, two signatures, and every tampering caught."""

from __future__ import annotations

import copy
import json
import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infernet.protocol import keys, receipts

NODE, PLATFORM = keys.Identity.generate(), keys.Identity.generate()


def _doc(inp: int = 1234, out: int = 567, *, billed: tuple[int, int] | None = None, delivered: int | None = None, platform: keys.Identity = PLATFORM, **terms_over: object) -> dict:
    terms = receipts.terms(
        job_id="chatcmpl-1", node_pubkey=NODE.pubkey, platform_pubkey=PLATFORM.pubkey, client="key_abc", model="llama-3-8b",
        input_rate=1_234_567, output_rate=4_938_271, fee_bps=1500, chain="base",
    )
    terms.update(terms_over)
    claim = receipts.complete(terms, inp, out, 1_760_000_000)
    b_in, b_out = billed or (inp, out)
    settled = receipts.settlement(claim, input_tokens=b_in, output_tokens=b_out, delivered_tokens=b_out if delivered is None else delivered, metered="claimed" if billed is None else "counted", settled_at=1_760_000_001)
    return {"receipt": claim, "node_signature": receipts.sign(NODE, claim), "settlement": settled, "platform_signature": receipts.sign(platform, settled)}


def test_canonical_json_is_sorted_compact_utf8_and_refuses_floats():
    assert receipts.canonical({"b": 1, "a": "é", "c": [True, None]}) == '{"a":"é","b":1,"c":[true,null]}'.encode()
    assert receipts.canonical({"z": {"y": 1, "x": "\n"}}) == b'{"z":{"x":"\\n","y":1}}'
    with pytest.raises(ValueError, match="float"):
        receipts.canonical({"value": 1.5})


@given(st.integers(0, 10**7), st.integers(0, 10**7), st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10_000))
def test_price_rounds_up_once_and_the_split_always_closes(inp, out, ir, orate, fee_bps):
    gross = receipts.price(inp, out, ir, orate)
    assert gross == math.ceil(Fraction(inp * ir + out * orate, 10**6))
    value, fee = receipts.split(gross, fee_bps)
    assert value + fee == gross and fee == gross * fee_bps // 10_000 and 0 <= fee <= gross


def test_usdc_strings_are_exact():
    assert receipts.usdc(1_234_567) == "1.234567" and receipts.usdc(-5) == "-0.000005"
    assert receipts.parse_usdc("10") == 10_000_000 and receipts.parse_usdc("0.000001") == 1 and receipts.parse_usdc(".5") == 500_000
    for bad in ("1.0000001", "abc", "", "1e3", "1.2.3"):
        with pytest.raises(ValueError):
            receipts.parse_usdc(bad)


def test_a_good_receipt_verifies_offline():
    doc = json.loads(json.dumps(_doc()))  # through a file and back
    assert receipts.verify(doc, platform_pubkey=PLATFORM.pubkey, node_pubkey=NODE.pubkey) == []
    body = doc["settlement"]
    assert (body["price"], body["fee"], body["value"]) == (4324, 648, 3676)  # 4323.455335 rounds up; 15 % of 4324 is 648.6, rounds down
    assert doc["receipt"]["price"] == 4324  # the claim states the same, as nothing was metered away


def test_a_settlement_below_the_claim_verifies_and_pays_what_it_says():
    doc = _doc(1234, 567, billed=(1000, 11), delivered=11)
    assert receipts.verify(doc, platform_pubkey=PLATFORM.pubkey) == []
    s = doc["settlement"]
    assert (s["input_tokens"], s["output_tokens"], s["delivered_tokens"]) == (1000, 11, 11)
    assert s["price"] == math.ceil(Fraction(1000 * 1_234_567 + 11 * 4_938_271, 10**6)) and s["value"] + s["fee"] == s["price"]


@pytest.mark.parametrize("field, value, why", [
    ("output_tokens", 568, "more tokens than the node claimed"), ("input_tokens", 1235, "more tokens than the node claimed"),
    ("price", 1, "price"), ("value", 1, "value"), ("delivered_tokens", 600, "delivered"), ("claim", "00" * 32, "another claim"),
    ("job_id", "chatcmpl-2", "another job"), ("metered", "guessed", "metered"),
])
def test_a_tampered_settlement_fails(field, value, why):
    doc = copy.deepcopy(_doc())
    doc["settlement"][field] = value
    problems = receipts.verify(doc)
    assert any(why in p for p in problems) and "the platform signature on the settlement does not match" in problems, problems


@pytest.mark.parametrize("field, value", [
    ("output_tokens", 568), ("input_tokens", 0), ("value", 3549), ("price", 1), ("model", "gpt-4"),
    ("job_id", "chatcmpl-2"), ("client", "key_xyz"), ("completed_at", 1), ("chain", "solana"), ("fee_bps", 0),
])
def test_any_tampered_field_fails(field, value):
    doc = copy.deepcopy(_doc())
    doc["receipt"][field] = value
    assert receipts.verify(doc)


def test_tampered_or_swapped_signatures_and_foreign_keys_fail():
    doc = _doc()
    assert "the node signature does not match" in receipts.verify({**doc, "node_signature": doc["platform_signature"]})
    assert "the platform signature on the settlement does not match" in receipts.verify({**doc, "platform_signature": "00" * 64})
    assert receipts.verify({k: v for k, v in doc.items() if k != "settlement"})  # no settlement: no payment
    # A receipt made up end to end by someone with their own "platform" key is intact but not trusted.
    rogue = keys.Identity.generate()
    fake = _doc(platform_pubkey=rogue.pubkey, platform=rogue)
    assert receipts.verify(fake) == []
    assert receipts.verify(fake, platform_pubkey=PLATFORM.pubkey) == ["the receipt names another platform key than the one trusted"]
    assert receipts.verify({"receipt": {**doc["receipt"], "extra": 1}, **{k: v for k, v in doc.items() if k != "receipt"}})[0].startswith("wrong fields")
    assert receipts.verify([1, 2]) and receipts.verify({"receipt": {**doc["receipt"], "price": 1.5}})


def test_payout_records_bind_their_receipts():
    docs = [_doc(job_id=f"job-{i}", inp=i, out=2 * i) for i in range(5)]
    docs[2] = _doc(job_id="job-2", inp=2, out=4, billed=(2, 1))  # metered below its claim: paid the settlement
    rec = receipts.payout_record(payout_id="po_1", node_pubkey=NODE.pubkey, platform_pubkey=PLATFORM.pubkey, chain="base", receipts=[d["settlement"] for d in docs], created_at=1)
    payout = {"payout": rec, "platform_signature": PLATFORM.sign(receipts.digest(rec)), "node_signature": NODE.sign(receipts.digest(rec)), "receipts": docs}
    assert rec["total"] == sum(d["settlement"]["value"] for d in docs) < sum(d["receipt"]["value"] for d in docs)
    assert receipts.verify_payout(payout, platform_pubkey=PLATFORM.pubkey, node_pubkey=NODE.pubkey) == []
    assert receipts.verify_payout({**payout, "receipts": docs[:-1]})  # a receipt left out
    assert receipts.verify_payout({**payout, "receipts": docs[::-1]})  # reordered: another root
    assert receipts.verify_payout({**payout, "payout": {**rec, "total": rec["total"] + 1}})
    assert receipts.verify_payout({**payout, "node_signature": PLATFORM.sign(receipts.digest(rec))})


def test_merkle_root_is_rfc6962_shaped():
    import hashlib

    h = lambda b: hashlib.sha256(b).digest()  # noqa: E731
    a, b, c = b"a" * 32, b"b" * 32, b"c" * 32
    la, lb, lc = h(b"\0" + a), h(b"\0" + b), h(b"\0" + c)
    assert receipts.merkle_root([a]) == la
    assert receipts.merkle_root([a, b, c]) == h(b"\1" + h(b"\1" + la + lb) + lc)
