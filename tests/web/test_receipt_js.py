"""The browser's receipt verifier against the Python reference (`protocol.receipts.verify`,
coincurve underneath): the same verdict, and the same problems in the same words, for good
receipts and for every way we know to spoil one, in the node's claim or the platform's
settlement. Run in real Chromium, once in a secure
context (crypto.subtle) and once on a plain-http LAN-like origin (the JS SHA-256)."""

from __future__ import annotations

import hashlib
import json
import os
import random
from typing import Any

import pytest
import pytest_asyncio

from infernet.protocol import keys, receipts
from tests.harness import Network

pytestmark = pytest.mark.asyncio(loop_scope="module")

P = 2**256 - 2**32 - 977
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
NODE, PLATFORM, OTHER = keys.Identity.generate(), keys.Identity.generate(), keys.Identity.generate()


def settled(claim: dict[str, Any], **over: Any) -> dict[str, Any]:
    """The platform's settlement of a claim: all it claimed, all delivered, unless `over`."""
    billed = {k: over.pop(k) for k in ("input_tokens", "output_tokens") if k in over}
    out = receipts.settlement(
        claim, input_tokens=billed.get("input_tokens", claim["input_tokens"]), output_tokens=billed.get("output_tokens", claim["output_tokens"]),
        delivered_tokens=over.pop("delivered_tokens", billed.get("output_tokens", claim["output_tokens"])), metered=over.pop("metered", "counted"),
        settled_at=1_700_000_005,
    )
    out.update(over)
    return out


def signed(body: dict[str, Any], node: keys.Identity = NODE, platform: keys.Identity = PLATFORM, settlement: dict[str, Any] | None = None) -> dict[str, Any]:
    """A receipt file: the node signs its claim, the platform the settlement of it."""
    if settlement is None:
        settlement = settled(body) if not set(receipts.FIELDS) - set(body) else {}
    return {"receipt": body, "node_signature": receipts.sign(node, body), "settlement": settlement, "platform_signature": receipts.sign(platform, settlement)}


def body(**over: Any) -> dict[str, Any]:
    fields = {"job_id": "chatcmpl-abc", "node_pubkey": NODE.pubkey, "platform_pubkey": PLATFORM.pubkey, "client": "key_0123456789abcdef",
              "model": "smollm2-135m-instruct", "input_rate": 10_000, "output_rate": 40_000, "fee_bps": 1_500, "chain": "base"}
    tokens = {k: over.pop(k) for k in ("input_tokens", "output_tokens") if k in over}
    fields.update({k: v for k, v in over.items() if k in fields})
    out = receipts.complete(receipts.terms(**fields), tokens.get("input_tokens", 21), tokens.get("output_tokens", 34), 1_700_000_000)
    out.update({k: v for k, v in over.items() if k not in fields})
    return out


def edited(doc: dict[str, Any], part: str = "receipt", **fields: Any) -> dict[str, Any]:
    """A copy with some fields of one part changed after it was signed."""
    out = json.loads(json.dumps(doc))
    out[part].update(fields)
    return out


def not_on_curve() -> str:
    x = 5
    while pow(x**3 + 7, (P - 1) // 2, P) == 1:  # a residue has a y: find an x that has none
        x += 1
    return f"{x:064x}"


GOOD = signed(body())


def cases() -> list[tuple[str, str, dict[str, Any]]]:
    """(name, receipt file text, trusted keys)."""
    weird = "smöl 🤖 \u202e \u2028 \"quoted\" back\\slash\nnew\ttab\u0001 \u007f 𝄞 é"
    big = signed(body(input_tokens=2**70, output_tokens=3 * 2**60, input_rate=2**40))
    no_sig = dict(GOOD, node_signature=None)
    upper = dict(GOOD, node_signature=GOOD["node_signature"].upper())
    spaced = dict(GOOD, platform_signature=" ".join(GOOD["platform_signature"][i:i + 2] for i in range(0, 128, 2)))
    swapped = dict(GOOD, node_signature=GOOD["platform_signature"], platform_signature=GOOD["node_signature"])
    claim = GOOD["receipt"]
    part_billed = signed(claim, settlement=settled(claim, output_tokens=20, delivered_tokens=18, metered="bounded"))
    r_too_big = dict(GOOD, node_signature=f"{P:064x}" + GOOD["node_signature"][64:])
    s_too_big = dict(GOOD, node_signature=GOOD["node_signature"][:64] + f"{N:064x}")
    extra = signed({**body(), "tip": 1})
    missing = signed({k: v for k, v in body().items() if k != "chain"})
    proto = signed({**body(), "__proto__": {"price": 0}})
    floaty = json.dumps(GOOD).replace('"output_rate": 40000', '"output_rate": 40000.0')
    duplicated = json.dumps(dict(GOOD, node_signature="00" * 64))[:-1] + f', "node_signature": "{GOOD["node_signature"]}"}}'
    trusted = {"platformPubkey": PLATFORM.pubkey, "nodePubkey": NODE.pubkey}
    out = [
        ("good", json.dumps(GOOD), {}),
        ("good, trusted keys named", json.dumps(GOOD), trusted),
        ("good, non-ASCII and escapes", json.dumps(signed(body(model=weird, client=weird))), {}),
        ("good, ensure_ascii off in the file", json.dumps(signed(body(model=weird)), ensure_ascii=False), {}),
        ("good, integers beyond 2^53", json.dumps(big), {}),
        ("good, uppercase hex", json.dumps(upper), {}),
        ("good, spaced hex as bytes.fromhex reads it", json.dumps(spaced), {}),
        ("good, duplicate key: the last wins", duplicated, {}),
        ("good, billed less than claimed", json.dumps(part_billed), {}),
        ("more tokens than were signed", json.dumps(edited(GOOD, output_tokens=340_000)), {}),
        ("arithmetic redone to match", json.dumps(edited(GOOD, **{k: v for k, v in body(output_tokens=340_000).items() if k in ("output_tokens", "price", "fee", "value")})), {}),
        ("another model", json.dumps(edited(GOOD, model="gpt-4")), {}),
        ("a bigger fee", json.dumps(edited(GOOD, fee=GOOD["receipt"]["fee"] + 1)), {}),
        ("fee_bps out of range", json.dumps(edited(GOOD, fee_bps=20_000)), {}),
        ("negative tokens", json.dumps(edited(GOOD, input_tokens=-1)), {}),
        ("a boolean for tokens", json.dumps(edited(GOOD, input_tokens=True)), {}),
        ("a string for a rate", json.dumps(edited(GOOD, input_rate="10000")), {}),
        ("a float", floaty, {}),
        ("another type", json.dumps(edited(GOOD, type="infernet.payout.v1")), {}),
        ("signatures swapped", json.dumps(swapped), {}),
        ("no node signature", json.dumps(no_sig), {}),
        ("signature not hex", json.dumps(dict(GOOD, platform_signature="zz" * 64)), {}),
        ("signature too short", json.dumps(dict(GOOD, node_signature=GOOD["node_signature"][:-2])), {}),
        ("r not below p", json.dumps(r_too_big), {}),
        ("s not below n", json.dumps(s_too_big), {}),
        ("node key not on the curve", json.dumps(edited(GOOD, node_pubkey=not_on_curve())), {}),
        ("node key not below p", json.dumps(edited(GOOD, node_pubkey=f"{P + 1:064x}")), {}),
        ("signed by another node", json.dumps(signed(body(), node=OTHER)), {}),
        ("another platform than the trusted one", json.dumps(signed(body(platform_pubkey=OTHER.pubkey), platform=OTHER)), trusted),
        ("another node than the job's", json.dumps(GOOD), {"nodePubkey": OTHER.pubkey}),
        ("settlement bills more than claimed", json.dumps(signed(claim, settlement=settled(claim, output_tokens=claim["output_tokens"] + 5))), {}),
        ("settlement of another claim", json.dumps(signed(claim, settlement=settled(body(model="other")))), {}),
        ("settlement for another job", json.dumps(signed(claim, settlement={**settled(claim), "job_id": "chatcmpl-other"})), {}),
        ("settlement price raised and signed", json.dumps(signed(claim, settlement={**settled(claim), "price": 999})), {}),
        ("settlement price raised after signing", json.dumps(edited(GOOD, "settlement", price=999, value=999)), {}),
        ("settlement metered by guess", json.dumps(signed(claim, settlement=settled(claim, metered="guessed"))), {}),
        ("settlement delivered more than billed", json.dumps(signed(claim, settlement=settled(claim, delivered_tokens=claim["output_tokens"] + 1))), {}),
        ("settlement of another type", json.dumps(signed(claim, settlement=settled(claim, type="infernet.receipt.v1"))), {}),
        ("settlement with an extra field", json.dumps(signed(claim, settlement={**settled(claim), "tip": 1})), {}),
        ("settlement missing a field", json.dumps(signed(claim, settlement={k: v for k, v in settled(claim).items() if k != "metered"})), {}),
        ("settlement with a float", json.dumps(GOOD).replace('"settled_at": 1700000005', '"settled_at": 1700000005.5'), {}),
        ("settlement with a string for tokens", json.dumps(signed(claim, settlement={**settled(claim), "output_tokens": "34"})), {}),
        ("settlement signed by the node", json.dumps(dict(GOOD, platform_signature=receipts.sign(NODE, GOOD["settlement"]))), {}),
        ("settlement missing", json.dumps({k: v for k, v in GOOD.items() if k != "settlement"}), {}),
        ("settlement not an object", json.dumps(dict(GOOD, settlement="paid")), {}),
        ("an extra field", json.dumps(extra), {}),
        ("a missing field", json.dumps(missing), {}),
        ("a __proto__ field", json.dumps(proto), {}),
        ("not a receipt file", json.dumps({"payout": {}}), {}),
        ("a list", "[]", {}),
        ("receipt not an object", json.dumps({"receipt": [1]}), {}),
    ]
    return out


def reference(text: str, trusted: dict[str, str]) -> list[str]:
    return receipts.verify(json.loads(text), platform_pubkey=trusted.get("platformPubkey"), node_pubkey=trusted.get("nodePubkey"))


def schnorr_cases() -> list[tuple[str, str, str, bool]]:
    rng = random.Random(340)
    out = []
    for i in range(24):
        ident = keys.Identity(rng.randbytes(32))
        msg = hashlib.sha256(f"message {i}".encode()).digest()
        sig = ident.sign(msg)
        out.append((ident.pubkey, msg.hex(), sig, True))
        flipped = bytearray(bytes.fromhex(sig))
        flipped[rng.randrange(64)] ^= 1 << rng.randrange(8)
        out.append((ident.pubkey, msg.hex(), flipped.hex(), False))
        out.append((ident.pubkey, hashlib.sha256(msg).hexdigest(), sig, False))
    for pubkey, msg, sig, _ in out:
        assert keys.verify(pubkey, bytes.fromhex(msg), sig) is _, "the reference disagrees with the case"
    return out


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def net(tmp_path_factory):
    async with Network.start(tmp=tmp_path_factory.mktemp("web-receipts")) as net:
        yield net


async def verifier_page(browser: Any, net: Network, *, secure: bool) -> Any:
    context = await browser.new_context()
    page = await context.new_page()
    if secure:
        await page.goto(f"{net.url}/dashboard")
    else:
        # A plain-http origin that is not localhost, as a LAN address is: no crypto.subtle.
        async def forward(route: Any) -> None:
            await route.fulfill(response=await route.fetch(url=route.request.url.replace("http://infernet.test", net.url)))

        await context.route("http://infernet.test/**", forward)
        await page.goto("http://infernet.test/dashboard")
    assert await page.evaluate("isSecureContext") is secure
    assert await page.evaluate("typeof crypto.subtle") == ("object" if secure else "undefined")
    return page


JS_VERIFY = """async (cases) => {
  const { verifyText } = await import('/dashboard/assets/receipt.js');
  const out = [];
  for (const [name, text, trusted] of cases) out.push((await verifyText(text, trusted)).problems);
  return out;
}"""


@pytest.mark.parametrize("secure", [True, False], ids=["secure-context", "plain-http"])
async def test_the_browser_agrees_with_python_on_every_receipt(browser, net, secure):
    page = await verifier_page(browser, net, secure=secure)
    all_cases = cases()
    got = await page.evaluate(JS_VERIFY, [list(c) for c in all_cases])
    for (name, text, trusted), problems in zip(all_cases, got, strict=True):
        assert problems == reference(text, trusted), name
    verdicts = {name: not problems for (name, _, _), problems in zip(all_cases, got, strict=True)}
    assert sum(verdicts.values()) == 9 and all(v for n, v in verdicts.items() if n.startswith("good"))
    await page.context.close()


@pytest.mark.parametrize("secure", [True, False], ids=["secure-context", "plain-http"])
async def test_bip340_and_sha256_match_libsecp256k1_and_hashlib(browser, net, secure):
    page = await verifier_page(browser, net, secure=secure)
    sigs = schnorr_cases()
    got = await page.evaluate("""async (cases) => {
      const { verifySchnorr, fromHex } = await import('/dashboard/assets/schnorr.js');
      const out = [];
      for (const [pk, msg, sig] of cases) out.push(await verifySchnorr(pk, fromHex(msg), sig));
      return out;
    }""", [list(c) for c in sigs])
    assert got == [ok for *_, ok in sigs]
    data = [os.urandom(n).hex() for n in (0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 1000)]
    hashes = await page.evaluate("""async (items) => {
      const { sha256, sha256Sync, fromHex, toHex } = await import('/dashboard/assets/schnorr.js');
      const out = [];
      for (const d of items) out.push([toHex(sha256Sync(fromHex(d))), toHex(await sha256(fromHex(d)))]);
      return out;
    }""", data)
    assert hashes == [[hashlib.sha256(bytes.fromhex(d)).hexdigest()] * 2 for d in data]
    await page.context.close()


async def test_canonical_json_is_byte_for_byte_pythons(browser, net):
    page = await verifier_page(browser, net, secure=True)
    samples = [
        {"b": 1, "a": [True, False, None, "x"], "é": {"z": "\u0000\u001f\"\\/", "y": 2**80}},
        {"\U0001d11e": 1, "\uffff": 2, "a": 3},  # code point order, not UTF-16 units
        {"emoji": "🤖", "sep": "\u2028\u2029", "del": "\u007f", "nested": [[], {}]},
    ]
    got = await page.evaluate("""async (texts) => {
      const { canonical, parseExact } = await import('/dashboard/assets/receipt.js');
      return texts.map((t) => canonical(parseExact(t)));
    }""", [json.dumps(s) for s in samples])
    assert got == [receipts.canonical(s).decode() for s in samples]
    await page.context.close()
