"""Metering, escrow, receipts and limits through a real control plane and real node daemons."""

from __future__ import annotations

import asyncio
import contextlib
import json

import msgspec

from infernet.backends.fake import FakeBackend
from infernet.node.daemon import Node
from infernet.protocol import keys, receipts
from tests.control.money.books import (
    TEST_TABLE,
    balance,
    books_balance,
    expected_price,
    funded_key,
    set_table,
)
from tests.harness import Network

CPU = TEST_TABLE["tiers"]["cpu"]


async def _chat(c, content="a b c", **extra):  # type: ignore[no-untyped-def]
    return await c.post("/v1/chat/completions", json={"model": "fake-model", "messages": [{"role": "user", "content": content}], **extra})


async def test_completed_job_charges_the_exact_price_and_the_receipt_verifies(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        node = await net.add_node(FakeBackend(reply="one two three four"))
        async with net.client() as admin:
            await set_table(admin)
            key = await funded_key(admin, "2.00")
            platform = (await admin.get("/api/v1/platform")).json()
        async with net.client(key["key"]) as c:
            r = await _chat(c)
            assert r.status_code == 200, r.text
            job_id = r.json()["id"]
            doc = (await c.get(f"/api/v1/jobs/{job_id}/receipt")).json()
        price, value, fee = expected_price(3, 4, CPU["input"], CPU["output"])
        body = doc["receipt"]
        assert (body["input_tokens"], body["output_tokens"]) == (3, 4)
        assert (body["price"], body["value"], body["fee"]) == (price, value, fee)
        assert body["node_pubkey"] == node.node.identity.pubkey and body["client"] == key["id"]
        assert receipts.verify(doc, platform_pubkey=platform["pubkey"], node_pubkey=node.node.identity.pubkey) == []
        b = await balance(net, key["key"])
        assert (b["available"], b["held"], b["spent"]) == (2_000_000 - price, 0, price)
        assert await net.cp.billing.ledger.node_view(node.node.identity.pubkey) == {"unpaid": value, "earned": value, "paid": 0, "receipts": 1}
        await books_balance(net)


async def test_too_little_balance_is_402_and_holds_nothing(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend())
        async with net.client() as admin:
            await set_table(admin)
            broke = await funded_key(admin, None)
            poor = await funded_key(admin, "0.50")  # under the 1.00 USDC minimum
            rich = await funded_key(admin, "1.00")
        for key in (broke, poor):
            async with net.client(key["key"]) as c:
                r = await _chat(c)
                assert r.status_code == 402, r.text
                err = r.json()["error"]
                assert set(err) == {"message", "type", "param", "code"} and err["code"] == "insufficient_balance"
                assert "1.000000 USDC" in err["message"]
                assert (await c.get("/api/v1/jobs")).json()["data"] == []
        async with net.client() as admin:  # output at 400 USDC per million tokens
            await set_table(admin, {**TEST_TABLE, "tiers": {"cpu": {"input": 1_234_567, "output": 400_000_000}}})
        async with net.client(rich["key"]) as c:
            # 1.00 USDC is enough for a short job, not for the worst case of a long one.
            r = await _chat(c, max_tokens=4000)
            assert r.status_code == 402 and "lower max_tokens" in r.json()["error"]["message"]
            r = await _chat(c, max_tokens=300_000)  # more than the model could ever produce
            assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens", r.text
            assert (await balance(net, rich["key"]))["available"] == 1_000_000
            assert (await _chat(c, max_tokens=5)).status_code == 200
        await books_balance(net)


async def test_a_failed_job_releases_everything(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend(reply="a b c d e f g", fail="engine died", fail_after=3))
        async with net.client() as admin:
            await set_table(admin)
            key = await funded_key(admin, "3.00")
        async with net.client(key["key"]) as c:
            async with c.stream("POST", "/v1/chat/completions", json={"model": "fake-model", "stream": True, "messages": [{"role": "user", "content": "x"}]}) as r:
                events = [json.loads(line[6:]) async for line in r.aiter_lines() if line.startswith("data: ") and line != "data: [DONE]"]
            assert "error" in events[-1]
            job = (await c.get(f"/api/v1/jobs/{events[0]['id']}")).json()
            assert job["status"] == "failed"
            assert (await c.get(f"/api/v1/jobs/{job['id']}/receipt")).status_code == 404
        b = await balance(net, key["key"])
        assert (b["available"], b["held"], b["spent"]) == (3_000_000, 0, 0)
        await books_balance(net)


async def test_a_cancelled_stream_is_metered_for_what_was_delivered(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        engine = FakeBackend(reply=" ".join(["w"] * 500), delay_s=0.01)
        await net.add_node(engine)
        async with net.client() as admin:
            await set_table(admin)
            key = await funded_key(admin, "3.00")
        async with net.client(key["key"]) as c:
            job_id = await net.hang_up_after(c, {"model": "fake-model", "messages": [{"role": "user", "content": "x y"}]})
            await net.wait_for(lambda: engine.cancelled == 1)
            await net.wait_for(lambda: not net.cp.driver.jobs)
            job = (await c.get(f"/api/v1/jobs/{job_id}")).json()
            doc = (await c.get(f"/api/v1/jobs/{job_id}/receipt")).json()
        assert job["status"] == "cancelled"
        out = job["usage"]["completion_tokens"]
        assert 0 < out < 500
        inp = job["usage"]["prompt_tokens"]  # 0 here: the fake engine reports no running usage
        assert (doc["receipt"]["input_tokens"], doc["receipt"]["output_tokens"]) == (inp, out)
        price, _, _ = expected_price(inp, out, CPU["input"], CPU["output"])
        assert doc["receipt"]["price"] == price
        assert (await balance(net, key["key"]))["available"] == 3_000_000 - price
        await books_balance(net)


async def test_rate_limit_is_per_key_and_429_holds_nothing(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend(reply="ok"))
        async with net.client() as admin:
            limited = await funded_key(admin, "2.00", rate_limit=2)
            other = await funded_key(admin, "2.00")
        async with net.client(limited["key"]) as c:
            assert [(await _chat(c)).status_code for _ in range(2)] == [200, 200]
            r = await _chat(c)
            assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
            assert int(r.headers["Retry-After"]) >= 1
        async with net.client(other["key"]) as c:
            assert (await _chat(c)).status_code == 200  # another key is not affected
        b = await balance(net, limited["key"])
        assert b["held"] == 0 and len((await net.cp.store.jobs.list(limited["id"]))) == 2


async def test_spend_limit_counts_charges_and_open_holds(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend(reply="a b c d"))
        async with net.client() as admin:
            await set_table(admin)
            # One job with max_tokens=4 holds about 4 * 4.94 + prompt bound * 1.23 micro-USDC.
            key = await funded_key(admin, "5.00", spend_limit="0.000400")
        async with net.client(key["key"]) as c:
            assert (await _chat(c, max_tokens=4)).status_code == 200
            r = await _chat(c, max_tokens=50)
            assert r.status_code == 402 and r.json()["error"]["code"] == "spend_limit_exceeded"
        async with net.client() as admin:
            assert (await admin.patch(f"/api/v1/keys/{key['id']}", json={"spend_limit": None})).json()["spend_limit"] is None
        async with net.client(key["key"]) as c:
            assert (await _chat(c, max_tokens=50)).status_code == 200
        await books_balance(net)


async def test_admin_keys_run_unfunded_and_their_jobs_still_pay_the_node(tmp_path):
    """The `infernet up` flow: its admin key has no balance, yet chats work and the node earns."""
    async with Network.start(tmp=tmp_path) as net:
        node = await net.add_node(FakeBackend(reply="x y"))
        async with net.client() as admin:
            r = await _chat(admin)
            assert r.status_code == 200
            await net.wait_for(lambda: not net.cp.driver.jobs)
            b = (await admin.get("/api/v1/balance")).json()
        assert b["available"] < 0 and b["spent"] == -b["available"]
        assert (await net.cp.billing.ledger.node_view(node.node.identity.pubkey))["unpaid"] > 0
        await books_balance(net)


@contextlib.asynccontextmanager
async def _running(net: Network, node: Node):  # type: ignore[no-untyped-def]
    stop = asyncio.Event()
    task = asyncio.create_task(node.run(stop))
    try:
        await net.wait_for(lambda: node.identity.pubkey in net.cp.sessions.nodes)
        yield node
    finally:
        stop.set()
        await task


async def test_a_node_sets_its_own_rate_within_bounds(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        greedy = Node(net.url, keys.Identity.generate(), FakeBackend(("greedy-model",), reply="a"), price={"input": CPU["input"] * 10, "output": CPU["output"]})
        cheap = Node(net.url, keys.Identity.generate(), FakeBackend(("cheap-model",), reply="a"), price={"input": 1, "output": CPU["output"] + 7})
        async with _running(net, greedy), _running(net, cheap):
            async with net.client() as admin:
                await set_table(admin)
                key = await funded_key(admin, "2.00")
                nodes = {n["id"]: n["price"] for n in (await admin.get("/api/v1/nodes")).json()["data"]}
            assert (nodes[greedy.identity.pubkey]["input"], nodes[greedy.identity.pubkey]["output"]) == (CPU["input"] * 2, CPU["output"])  # capped at 200 %
            assert (nodes[cheap.identity.pubkey]["input"], nodes[cheap.identity.pubkey]["output"]) == (CPU["input"] // 2, CPU["output"] + 7)  # floored at 50 %
            async with net.client(key["key"]) as c:
                r = await c.post("/v1/chat/completions", json={"model": "greedy-model", "messages": [{"role": "user", "content": "q"}]})
                doc = (await c.get(f"/api/v1/jobs/{r.json()['id']}/receipt")).json()
            assert doc["receipt"]["input_rate"] == CPU["input"] * 2
            assert doc["receipt"]["price"] == expected_price(1, 1, CPU["input"] * 2, CPU["output"])[0]


class _LyingNode(Node):
    """Signs a receipt for more tokens than it served."""

    def _done(self, job, usage, finish, result=None, engine_s=None):  # type: ignore[no-untyped-def]
        done = super()._done(job, usage, finish, result, engine_s)
        if done.receipt is None:
            return done
        body = receipts.complete(done.receipt, done.receipt["input_tokens"], done.receipt["output_tokens"] + 50, done.receipt["completed_at"])
        return msgspec.structs.replace(done, receipt=body, signature=receipts.sign(self.identity, body))


async def test_a_node_cannot_bill_for_tokens_it_did_not_serve(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        async with _running(net, _LyingNode(net.url, keys.Identity.generate(), FakeBackend(reply="a b c"))) as liar:
            async with net.client() as admin:
                key = await funded_key(admin, "2.00")
            async with net.client(key["key"]) as c:
                r = await _chat(c)
                assert r.status_code == 200  # the client still gets its answer
                assert (await c.get(f"/api/v1/jobs/{r.json()['id']}/receipt")).status_code == 404
            assert (await balance(net, key["key"]))["available"] == 2_000_000
            assert (await net.cp.billing.ledger.node_view(liar.identity.pubkey))["unpaid"] == 0
            await books_balance(net)


async def test_credit_and_pricing_need_admin_and_valid_input(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        async with net.client() as admin:
            key = await funded_key(admin, None)
            for bad in ({"amount": "-1"}, {"amount": "1.0000001"}, {"amount": "abc"}, {}):
                r = await admin.post(f"/api/v1/keys/{key['id']}/credit", json=bad)
                assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", bad
            assert (await admin.post("/api/v1/keys/key_nope/credit", json={"amount": "1"})).status_code == 404
            r = await admin.put("/api/v1/pricing", json={**TEST_TABLE, "fee_bps": 20_000})
            assert r.status_code == 400 and "fee_bps" in r.json()["error"]["message"]
            r = await admin.put("/api/v1/pricing", json={**TEST_TABLE, "tiers": {">=8gb": {"input": 1, "output": 4}}})
            assert r.status_code == 400 and "cpu" in r.json()["error"]["message"]
        async with net.client(key["key"]) as c:
            assert (await c.post(f"/api/v1/keys/{key['id']}/credit", json={"amount": "100"})).status_code == 403
            assert (await c.put("/api/v1/pricing", json=TEST_TABLE)).status_code == 403
            assert (await c.get("/api/v1/pricing")).json()["fee_bps"] == 1500
            assert (await c.get("/api/v1/balance", params={"key_id": "key_other"})).status_code == 403
