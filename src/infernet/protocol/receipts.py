"""Compute Payment Receipts and payout records: canonical JSON signed with BIP-340.

A receipt has two signed parts. The **claim** says: node N served job J for client C, this
many input and output tokens of model M, at these rates, on this date; the node signs it when
it finishes the job. The **settlement** says what the platform metered from the text it
relayed and charged for that claim (never more than claimed): input and output tokens billed,
of those how many reached the client, and the money; the platform signs it, naming the
claim by its digest. Anyone holding the file can check both signatures and the arithmetic
offline. Payouts pay the settlement's value.

Canonical JSON (what is hashed and signed): the object serialized with keys sorted, no
whitespace (`,` and `:` separators), UTF-8, strings escaped as JSON requires and nothing
more (non-ASCII left as is). Values are only strings, integers, booleans, null, lists and
objects: floats are refused, so the bytes are the same in every language. For such values
this is exactly RFC 8785 (JCS). The signed digest is SHA-256 of those bytes; the body's
`type` field ("infernet.receipt.v1" or "infernet.payout.v1") separates the two domains.

Money is integer micro-USDC (1 USDC = 1,000,000). Rates are micro-USDC per million tokens.
    price = ceil((input_tokens * input_rate + output_tokens * output_rate) / 1,000,000)
    fee   = floor(price * fee_bps / 10,000)        value = price - fee  (the node's earnings)
Rounding up the price once per job costs a client at most one micro-unit; rounding the fee
down gives the node the odd micro-unit. value + fee == price always, so the books close.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from infernet.protocol import keys

RECEIPT_TYPE = "infernet.receipt.v1"
SETTLEMENT_TYPE = "infernet.settlement.v1"
PAYOUT_TYPE = "infernet.payout.v1"
UNIT = "micro-USDC"
MICRO = 1_000_000  # micro-units per USDC
PER_TOKENS = 1_000_000  # rates are quoted per million tokens
BPS = 10_000

# What the control plane fixes before the job runs; the node adds usage and the date.
TERMS = ("type", "job_id", "node_pubkey", "platform_pubkey", "client", "model", "input_rate", "output_rate", "fee_bps", "chain", "unit")
FIELDS = (*TERMS, "input_tokens", "output_tokens", "completed_at", "price", "fee", "value")
# What the platform signs: what it metered and charged for the node's claim (by its digest).
SETTLEMENT_FIELDS = ("type", "job_id", "claim", "input_tokens", "output_tokens", "delivered_tokens", "metered", "price", "fee", "value", "settled_at")
METERED = ("claimed", "counted", "bounded")


def canonical(obj: Any) -> bytes:
    _check_canonical(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _check_canonical(obj: Any) -> None:
    if obj is None or isinstance(obj, (str, bool, int)):
        return
    if isinstance(obj, float):
        raise ValueError("floats are not allowed in canonical JSON; use integer micro-units")
    if isinstance(obj, (list, tuple)):
        for v in obj:
            _check_canonical(v)
        return
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise ValueError("canonical JSON keys must be strings")
            _check_canonical(v)
        return
    raise ValueError(f"{type(obj).__name__} is not allowed in canonical JSON")


def digest(body: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(canonical(body)).digest()


# -- money ----------------------------------------------------------------------------------


def price(input_tokens: int, output_tokens: int, input_rate: int, output_rate: int) -> int:
    """What the client pays, in micro-USDC, rounded up to the micro-unit."""
    for n in (input_tokens, output_tokens, input_rate, output_rate):
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError("token counts and rates are non-negative integers")
    return -(-(input_tokens * input_rate + output_tokens * output_rate) // PER_TOKENS)


def split(gross: int, fee_bps: int) -> tuple[int, int]:
    """(node value, platform fee); the fee rounds down so the parts always sum to `gross`."""
    if not 0 <= fee_bps <= BPS:
        raise ValueError("fee_bps must be within 0..10000")
    fee = gross * fee_bps // BPS
    return gross - fee, fee


def usdc(micro: int) -> str:
    """Micro-USDC as a decimal string, exact: 1234567 -> '1.234567'."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO)
    return f"{sign}{whole}.{frac:06d}"


def parse_usdc(text: str) -> int:
    """'1.5' -> 1500000. At most six decimals; no floats anywhere."""
    text = text.strip()
    neg = text.startswith("-")
    whole, _, frac = text.lstrip("+-").partition(".")
    if not (whole or frac) or not (whole or "0").isdigit() or (frac and not frac.isdigit()) or len(frac) > 6:
        raise ValueError(f"not an amount in USDC with at most 6 decimals: {text!r}")
    micro = int(whole or "0") * MICRO + int((frac + "000000")[:6])
    return -micro if neg else micro


# -- receipts -------------------------------------------------------------------------------


def terms(*, job_id: str, node_pubkey: str, platform_pubkey: str, client: str, model: str, input_rate: int, output_rate: int, fee_bps: int, chain: str) -> dict[str, Any]:
    return {
        "type": RECEIPT_TYPE,
        "job_id": job_id,
        "node_pubkey": node_pubkey,
        "platform_pubkey": platform_pubkey,
        "client": client,
        "model": model,
        "input_rate": input_rate,
        "output_rate": output_rate,
        "fee_bps": fee_bps,
        "chain": chain,
        "unit": UNIT,
    }


def complete(job_terms: Mapping[str, Any], input_tokens: int, output_tokens: int, completed_at: int) -> dict[str, Any]:
    """The receipt body for what was actually served under these terms."""
    body = {k: job_terms[k] for k in TERMS}
    gross = price(input_tokens, output_tokens, body["input_rate"], body["output_rate"])
    value, fee = split(gross, body["fee_bps"])
    body.update(input_tokens=input_tokens, output_tokens=output_tokens, completed_at=completed_at, price=gross, fee=fee, value=value)
    return body


def sign(ident: keys.Identity, body: Mapping[str, Any]) -> str:
    return ident.sign(digest(body))


def check_body(body: Any) -> list[str]:
    """Problems with a receipt body's shape and arithmetic (signatures aside)."""
    if not isinstance(body, dict):
        return ["the receipt is not a JSON object"]
    problems = []
    if set(body) != set(FIELDS):
        missing, extra = set(FIELDS) - set(body), set(body) - set(FIELDS)
        problems.append(f"wrong fields (missing {sorted(missing)}, unexpected {sorted(extra)})")
        return problems
    if body["type"] != RECEIPT_TYPE:
        problems.append(f"type is {body['type']!r}, expected {RECEIPT_TYPE!r}")
    try:
        redo = complete(body, body["input_tokens"], body["output_tokens"], body["completed_at"])
    except (ValueError, TypeError) as exc:
        return [*problems, f"bad numbers: {exc}"]
    for k in ("price", "fee", "value"):
        if body[k] != redo[k]:
            problems.append(f"{k} is {body[k]} but the tokens and rates give {redo[k]}")
    return problems


def settlement(claim: Mapping[str, Any], *, input_tokens: int, output_tokens: int, delivered_tokens: int, metered: str, settled_at: int) -> dict[str, Any]:
    """What the platform charges for a node's claim: at most what it claims, at its rates."""
    gross = price(input_tokens, output_tokens, claim["input_rate"], claim["output_rate"])
    value, fee = split(gross, claim["fee_bps"])
    return {
        "type": SETTLEMENT_TYPE, "job_id": claim["job_id"], "claim": digest(claim).hex(),
        "input_tokens": input_tokens, "output_tokens": output_tokens, "delivered_tokens": delivered_tokens,
        "metered": metered, "price": gross, "fee": fee, "value": value, "settled_at": settled_at,
    }


def check_settlement(claim: Mapping[str, Any], body: Any) -> list[str]:
    """Problems with a settlement for this claim (signatures aside)."""
    if not isinstance(body, dict):
        return ["the settlement is not a JSON object"]
    if set(body) != set(SETTLEMENT_FIELDS):
        missing, extra = set(SETTLEMENT_FIELDS) - set(body), set(body) - set(SETTLEMENT_FIELDS)
        return [f"the settlement has wrong fields (missing {sorted(missing)}, unexpected {sorted(extra)})"]
    problems = []
    if body["type"] != SETTLEMENT_TYPE:
        problems.append(f"settlement type is {body['type']!r}, expected {SETTLEMENT_TYPE!r}")
    if body["job_id"] != claim.get("job_id"):
        problems.append("the settlement is for another job than the claim")
    try:
        if body["claim"] != digest(claim).hex():
            problems.append("the settlement names another claim")
        redo = settlement(claim, input_tokens=body["input_tokens"], output_tokens=body["output_tokens"], delivered_tokens=body["delivered_tokens"], metered=body["metered"], settled_at=body["settled_at"])
    except (ValueError, TypeError, KeyError) as exc:
        return [*problems, f"bad numbers in the settlement: {exc}"]
    if body["metered"] not in METERED:
        problems.append(f"metered is {body['metered']!r}, expected one of {METERED}")
    if body["input_tokens"] > claim["input_tokens"] or body["output_tokens"] > claim["output_tokens"]:
        problems.append("the settlement bills more tokens than the node claimed")
    if not 0 <= body["delivered_tokens"] <= body["output_tokens"]:
        problems.append("delivered tokens are not within 0 and the billed output")
    for k in ("price", "fee", "value"):
        if body[k] != redo[k]:
            problems.append(f"settlement {k} is {body[k]} but the billed tokens and rates give {redo[k]}")
    return problems


def verify(doc: Any, *, platform_pubkey: str | None = None, node_pubkey: str | None = None) -> list[str]:
    """Every reason a receipt file is not good; empty when both signatures and the sums hold.

    Pass the keys you trust: without `platform_pubkey`, a receipt signed by any platform
    key named inside it passes, which proves integrity but not who issued it.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("receipt"), dict):
        return ["not a receipt file: expected {\"receipt\": {...}, \"node_signature\", \"settlement\": {...}, \"platform_signature\"}"]
    body = doc["receipt"]
    problems = check_body(body)
    if problems and "wrong fields" in problems[0]:
        return problems
    try:
        d = digest(body)
    except ValueError as exc:
        return [*problems, str(exc)]
    if node_pubkey is not None and body["node_pubkey"] != node_pubkey:
        problems.append("the receipt names another node than the one expected")
    if platform_pubkey is not None and body["platform_pubkey"] != platform_pubkey:
        problems.append("the receipt names another platform key than the one trusted")
    if not keys.verify(str(body["node_pubkey"]), d, str(doc.get("node_signature") or "")):
        problems.append("the node signature does not match")
    settled = doc.get("settlement")
    problems += check_settlement(body, settled)
    if isinstance(settled, dict):
        try:
            sd = digest(settled)
        except ValueError as exc:
            return [*problems, str(exc)]
        if not keys.verify(str(body["platform_pubkey"]), sd, str(doc.get("platform_signature") or "")):
            problems.append("the platform signature on the settlement does not match")
    return problems


# -- payouts --------------------------------------------------------------------------------
# A payout bundles receipts under a Merkle root (RFC 6962 style: leaf = sha256(0x00 | receipt
# digest), inner = sha256(0x01 | left | right), an odd node is carried up unchanged), so a
# contract can check one receipt's inclusion with a log-sized proof and the platform's
# signature over the record.


def merkle_root(leaves: Iterable[bytes]) -> bytes:
    level = [hashlib.sha256(b"\x00" + leaf).digest() for leaf in leaves]
    if not level:
        return hashlib.sha256(b"").digest()
    while len(level) > 1:
        nxt = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def payout_record(*, payout_id: str, node_pubkey: str, platform_pubkey: str, chain: str, receipts: list[Mapping[str, Any]], created_at: int) -> dict[str, Any]:
    """`receipts`: the settlements paid out (each names its claim)."""
    return {
        "type": PAYOUT_TYPE,
        "payout_id": payout_id,
        "node_pubkey": node_pubkey,
        "platform_pubkey": platform_pubkey,
        "chain": chain,
        "unit": UNIT,
        "total": sum(int(r["value"]) for r in receipts),
        "receipt_count": len(receipts),
        "receipts_root": merkle_root(digest(r) for r in receipts).hex(),
        "created_at": created_at,
    }


def verify_payout(doc: Any, *, platform_pubkey: str | None = None, node_pubkey: str | None = None) -> list[str]:
    """A payout file: the record, its signatures, and every receipt it bundles."""
    if not isinstance(doc, dict) or not isinstance(doc.get("payout"), dict):
        return ["not a payout file: expected {\"payout\": {...}, \"platform_signature\", \"receipts\": [...]}"]
    rec = doc["payout"]
    problems: list[str] = []
    if rec.get("type") != PAYOUT_TYPE:
        problems.append(f"type is {rec.get('type')!r}, expected {PAYOUT_TYPE!r}")
    if platform_pubkey is not None and rec.get("platform_pubkey") != platform_pubkey:
        problems.append("the payout names another platform key than the one trusted")
    if node_pubkey is not None and rec.get("node_pubkey") != node_pubkey:
        problems.append("the payout names another node than the one expected")
    try:
        d = digest(rec)
    except ValueError as exc:
        return [*problems, str(exc)]
    if not keys.verify(str(rec.get("platform_pubkey")), d, str(doc.get("platform_signature") or "")):
        problems.append("the platform signature on the payout does not match")
    if doc.get("node_signature") is not None and not keys.verify(str(rec.get("node_pubkey")), d, str(doc["node_signature"])):
        problems.append("the node signature on the payout does not match")
    items = doc.get("receipts")
    if not isinstance(items, list):
        return [*problems, "the payout file carries no receipts list"]
    bodies = []
    for i, item in enumerate(items):
        for p in verify(item, platform_pubkey=rec.get("platform_pubkey"), node_pubkey=rec.get("node_pubkey")):
            problems.append(f"receipt {i}: {p}")
        if isinstance(item, dict) and isinstance(item.get("settlement"), dict):
            bodies.append(item["settlement"])
    if not problems:
        redo = payout_record(
            payout_id=rec["payout_id"], node_pubkey=rec["node_pubkey"], platform_pubkey=rec["platform_pubkey"],
            chain=rec["chain"], receipts=bodies, created_at=rec["created_at"],
        )
        for k in ("total", "receipt_count", "receipts_root"):
            if rec.get(k) != redo[k]:
                problems.append(f"the payout's {k} does not match its receipts")
    return problems
