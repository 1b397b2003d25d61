"""A randomized run through the real network: every micro-unit accounted for, every receipt good."""

from __future__ import annotations

import asyncio
import json
import random

from infernet.backends.fake import FakeBackend
from infernet.client import Client
from infernet.protocol import receipts
from tests.control.money.books import funded_key, set_table
from tests.harness import Network


async def _one(net: Network, key: str, rng: random.Random) -> str:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": " ".join("w" * rng.randint(1, 3) for _ in range(rng.randint(1, 12)))}]}
    if rng.random() < 0.7:
        body["max_tokens"] = rng.randint(1, 40)
    mode = rng.choice(["plain", "stream", "cancel", "job"])
    async with net.client(key) as c:
        if mode == "plain":
            r = await c.post("/v1/chat/completions", json=body)
            return f"plain {r.status_code}"
        if mode == "job":
            r = await c.post("/api/v1/jobs", json=body)
            if r.status_code == 202 and rng.random() < 0.5:
                await asyncio.sleep(rng.random() * 0.05)
                await c.post(f"/api/v1/jobs/{r.json()['id']}/cancel")
            return f"job {r.status_code}"
        stop_after = rng.randint(1, 6) if mode == "cancel" else None
        async with c.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
            n = 0
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    n += 1
                    if stop_after and n >= stop_after:
                        break
        return f"{mode} {r.status_code}"


async def test_randomized_run_books_and_receipts_exact_to_the_micro_unit(tmp_path):
    rng = random.Random(2024)
    async with Network.start(tmp=tmp_path) as net:
        words = " ".join(f"t{i}" for i in range(60))
        await net.add_node(FakeBackend(reply=words, delay_s=0.002, slots=3), name="steady")
        await net.add_node(FakeBackend(reply=words, delay_s=0.003, slots=2), name="dies-mid-stream")
        net.nodes[-1].node.backend.fail, net.nodes[-1].node.backend.fail_after = "engine crashed", 5
        await net.add_node(FakeBackend(fail="never starts"), name="fails-before-first-token")
        await net.add_node(FakeBackend(reply=words, delay_s=0.002, slots=2), name="pricey", price={"input": 2_000_000, "output": 9_000_000})
        async with net.client() as admin:
            await set_table(admin)
            clients = [await funded_key(admin, amount) for amount in ("3.000001", "4.5", "2.25")]
        credited = {clients[0]["id"]: 3_000_001, clients[1]["id"]: 4_500_000, clients[2]["id"]: 2_250_000}
        outcomes: list[str] = []
        for _ in range(6):
            outcomes += await asyncio.gather(*(_one(net, rng.choice(clients)["key"], rng) for _ in range(8)))
        await net.wait_for(lambda: not net.cp.driver.jobs, timeout=60)

        platform = net.cp.billing.platform.pubkey
        ledger = net.cp.billing.ledger
        rows = [j for k in credited for j in await net.cp.store.jobs.list(k, limit=1000)]
        statuses = {r["status"] for r in rows}
        assert {"completed", "cancelled", "failed"} <= statuses, (statuses, outcomes)
        rates = {(r["receipt"]["input_rate"], r["receipt"]["output_rate"]) for r in [await ledger.receipt(row["id"]) for row in rows] if r}
        assert len(rates) == 2  # the table's rate and the pricey node's own
        paid_by: dict[str, int] = dict.fromkeys(credited, 0)
        earned: dict[str, int] = {}
        fees = 0
        for row in rows:
            doc = await ledger.receipt(row["id"])
            if row["status"] == "failed" or row["status"] == "cancelled" and not row.get("node_id"):
                assert doc is None, row
                continue
            if doc is None:  # a cancelled job whose node sent no final usage in time: nothing charged
                assert row["status"] == "cancelled"
                continue
            assert receipts.verify(json.loads(json.dumps(doc)), platform_pubkey=platform) == []
            b = doc["receipt"]
            assert (b["input_tokens"], b["output_tokens"]) == (row["prompt_tokens"], row["completion_tokens"])
            assert b["client"] == row["key_id"] and b["node_pubkey"] == row["node_id"]
            paid_by[row["key_id"]] += b["price"]
            earned[b["node_pubkey"]] = earned.get(b["node_pubkey"], 0) + b["value"]
            fees += b["fee"]
        for key_id, amount in credited.items():
            view = await ledger.client_view(key_id)
            assert (view["available"], view["held"], view["spent"]) == (amount - paid_by[key_id], 0, paid_by[key_id])
        for n in net.nodes:
            assert (await ledger.node_view(n.node.identity.pubkey))["unpaid"] == earned.get(n.node.identity.pubkey, 0)
        assert await ledger.balance("platform:fees") == fees
        assert await ledger.check() == []

        # Every node claims its receipts; the payout records add up and the books still close.
        def claim_all() -> list[dict]:
            with Client(net.url, None) as client:
                return [client.payout(n.node.identity) for n in net.nodes if earned.get(n.node.identity.pubkey)]

        payouts = await asyncio.to_thread(claim_all)
        assert sum(p["payout"]["total"] for p in payouts) == sum(earned.values())
        assert all(receipts.verify_payout(p, platform_pubkey=platform) == [] for p in payouts)
        assert await ledger.balance("external:payouts") == sum(earned.values())
        assert await ledger.check() == []
