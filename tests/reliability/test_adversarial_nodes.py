"""Nodes that lie about their tier, their usage or their output are paid only for what they
really served: real node daemons with lying engines behind a real control plane."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from infernet.backends.base import Chunk
from infernet.backends.fake import FakeBackend
from infernet.control import Settings
from infernet.control.health.verify import VerifyPolicy
from infernet.control.money import pricing
from infernet.control.money.metering import Tokenizers
from infernet.protocol import keys, receipts
from infernet.protocol.messages import Usage
from tests.harness import Network

CHAT = "/v1/chat/completions"
RATES = pricing.DEFAULT_TIERS


def words(text: str) -> int:
    """The fake engine's tokenizer: one token a word."""
    return len(text.split())


def ask(text: str = "x", **extra: Any) -> dict[str, Any]:
    return {"model": "fake-model", "messages": [{"role": "user", "content": text}], **extra}


def quiet(**kw: Any) -> Settings:
    kw.setdefault("verify", VerifyPolicy(canary_rate=0))
    return Settings(heartbeat_s=0.5, seed=5, **kw)


async def receipt_of(c: Any, r: Any) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    doc = (await c.get(f"/api/v1/jobs/{r.json()['id']}/receipt")).json()
    assert receipts.verify(doc) == [], doc
    return doc


class Overclaiming(FakeBackend):
    """Serves the real answer, then reports the whole output cap as generated."""

    async def _stream(self, body: dict[str, Any]) -> AsyncIterator[Chunk]:  # type: ignore[override]
        async for chunk in super()._stream(body):
            if chunk.usage is not None:
                chunk = Chunk(finish_reason=chunk.finish_reason, usage=Usage(chunk.usage.prompt_tokens, int(body.get("max_tokens") or 4096)))
            yield chunk


class NoTokenizer(FakeBackend):
    """An honest engine that cannot count tokens (as most HTTP engines here): a cancelled job
    is reported by the bytes it produced, an upper bound."""

    async def count_tokens(self, text: str) -> int | None:
        return None


async def test_a_node_claiming_a_tier_its_hardware_cannot_reach_is_paid_cpu_rates(tmp_path):
    async with Network.start(tmp=tmp_path, settings=quiet()) as net:
        liar = await net.add_node(FakeBackend(reply="a b c"), tier=">=48gb", hardware={"gpus": [], "cpu": {"cores": 2}})
        async with net.client() as c:
            doc = await receipt_of(c, await c.post(CHAT, json=ask()))
            nodes = {n["id"]: n for n in (await c.get("/api/v1/nodes")).json()["data"]}
        assert doc["receipt"]["node_pubkey"] == liar.node.identity.pubkey
        assert (doc["receipt"]["input_rate"], doc["receipt"]["output_rate"]) == (RATES["cpu"].input, RATES["cpu"].output)
        assert nodes[liar.node.identity.pubkey]["tier"] == "cpu"


async def test_a_forged_48gb_hardware_report_is_paid_24gb_rates_until_its_speed_vouches(tmp_path):
    async with Network.start(tmp=tmp_path, settings=quiet()) as net:
        # The report says one 48 GB card, but the engine crawls: no measured speed ever vouches.
        await net.add_node(FakeBackend(reply=" ".join(["w"] * 8), delay_s=0.02), tier=">=48gb")
        async with net.client() as c:
            docs = [await receipt_of(c, await c.post(CHAT, json=ask(f"q{i}"))) for i in range(7)]
        paid = {(d["receipt"]["input_rate"], d["receipt"]["output_rate"]) for d in docs}
        assert paid == {(RATES[">=24gb"].input, RATES[">=24gb"].output)}  # one tier lower, every time
        assert all(d["settlement"]["price"] == receipts.price(d["settlement"]["input_tokens"], d["settlement"]["output_tokens"], RATES[">=24gb"].input, RATES[">=24gb"].output) for d in docs)


async def test_a_node_claiming_the_whole_output_cap_for_a_short_reply_is_billed_what_it_sent(tmp_path):
    async with Network.start(tmp=tmp_path, settings=quiet()) as net:
        liar = await net.add_node(Overclaiming(reply="just four short words"), tier="cpu")
        lid = liar.node.identity.pubkey
        key = await net.funded_key("client", "5.00")
        async with net.client(key) as c:
            r = await c.post(CHAT, json=ask(max_tokens=2000))
            doc = await receipt_of(c, r)
            bal = (await c.get("/api/v1/balance")).json()
        claim, settled = doc["receipt"], doc["settlement"]
        assert claim["output_tokens"] == 2000  # what the node signed
        text = r.json()["choices"][0]["message"]["content"]
        assert text == "just four short words"
        # Billed at most the byte bound of what it relayed (no tokenizer for this model here).
        assert settled["output_tokens"] <= len(text.encode()) + 4 and settled["metered"] == "bounded"
        assert bal["available"] == 5_000_000 - settled["price"] and settled["price"] < claim["price"]
        assert r.json()["usage"]["completion_tokens"] == settled["output_tokens"]  # the client sees the billed figure
        assert net.cp.health.breaker(lid).state == "open"  # out of rotation at once
        assert net.cp.health.reputation.of(lid).score(0) < net.cp.health.reputation.of("never-seen").score(0)


async def test_with_the_model_tokenizer_an_overclaim_is_billed_at_the_counted_figure(tmp_path):
    async with Network.start(tmp=tmp_path, settings=quiet()) as net:
        net.cp.billing.tokenizers = Tokenizers({"fake-model": lambda: words})
        await net.add_node(Overclaiming(reply="one two three four five"), tier="cpu")
        async with net.client() as c:
            doc = await receipt_of(c, await c.post(CHAT, json=ask(max_tokens=500)))
        assert (doc["receipt"]["output_tokens"], doc["settlement"]["output_tokens"], doc["settlement"]["metered"]) == (500, 5, "counted")


async def test_an_honest_node_that_cannot_count_a_cancelled_stream_is_not_taken_for_a_cheat(tmp_path):
    async with Network.start(tmp=tmp_path, settings=quiet()) as net:
        net.cp.billing.tokenizers = Tokenizers({"fake-model": lambda: words})
        honest = await net.add_node(NoTokenizer(reply=" ".join(["word"] * 200), delay_s=0.01), tier="cpu")
        hid = honest.node.identity.pubkey
        async with net.client() as c:
            job_id = await Network.hang_up_after(c, ask(), events=5)
            await net.wait_for(lambda: job_id not in net.cp.driver.jobs)
            doc = (await c.get(f"/api/v1/jobs/{job_id}/receipt")).json()
            r = await c.post(CHAT, json=ask("after the cancel"))
        assert doc["settlement"]["output_tokens"] <= doc["settlement"]["delivered_tokens"] + 4  # billed what reached the client
        assert net.cp.health.breaker(hid).state == "closed"
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"].startswith("word")


async def test_a_node_making_up_answers_at_temperature_0_is_caught_and_then_earns_nothing(tmp_path):
    reference = keys.Identity.generate()
    policy = VerifyPolicy(canary_rate=0.5, trusted_nodes=frozenset({reference.pubkey}))
    async with Network.start(tmp=tmp_path, settings=quiet(verify=policy)) as net:
        await net.add_node(FakeBackend(), name="trusted", identity=reference)
        faker = await net.add_node(FakeBackend(reply="Confidently made up."), name="faker", tier=">=48gb")
        fid = faker.node.identity.pubkey
        async with net.client() as c:
            for i in range(30):
                assert (await c.post(CHAT, json=ask(f"question {i}", temperature=0))).status_code == 200
                await net.wait_for(lambda: not net.cp.driver.busy)
                if net.cp.driver.verifier.caught.get(fid):
                    break
            assert net.cp.driver.verifier.caught.get(fid), "the faker was never caught"
            earned = (await net.cp.billing.ledger.node_view(fid))["unpaid"]
            for i in range(8):
                r = await c.post(CHAT, json=ask(f"after {i}", temperature=0))
                assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == f"echo: after {i}"
            await net.wait_for(lambda: not net.cp.driver.busy)
        assert (await net.cp.billing.ledger.node_view(fid))["unpaid"] == earned  # not a micro-unit more
        assert net.cp.health.breaker(fid).state == "open"
        assert json.dumps(earned)  # a plain number
