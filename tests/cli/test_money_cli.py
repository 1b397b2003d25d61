"""The money commands against a running network, as a user types them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from infernet.backends.fake import FakeBackend
from infernet.protocol import keys, receipts
from tests.harness import ADMIN_KEY, Network

REPO = Path(__file__).resolve().parents[2]


async def cli(home: Path, *args: str, url: str | None = None, key: str | None = None) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "INFERNET_HOME": str(home), "COLUMNS": "200"}
    if url:
        env["INFERNET_URL"] = url
    if key:
        env["INFERNET_API_KEY"] = key
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "infernet", *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_fund_chat_receipt_payments_payout_and_verify(tmp_path):
    node_home = tmp_path / "node"
    node_home.mkdir()
    ident = keys.Identity.generate()
    keys.save(node_home / "node_key.json", ident)
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend(reply="paid words here"), identity=ident)
        code, out = await cli(tmp_path, "keys", "api", "create", "--name", "alice", "--spend-limit", "2.5", url=net.url, key=ADMIN_KEY)
        assert code == 0, out
        key_id, secret = out.split()[:2]
        code, out = await cli(tmp_path, "keys", "api", "credit", key_id, "1.25", url=net.url, key=ADMIN_KEY)
        assert code == 0 and "balance 1.250000 USDC" in out, out
        code, out = await cli(tmp_path, "chat", "hello there", url=net.url, key=secret)
        assert code == 0 and "paid words here" in out, out
        job_id = (await net.cp.store.jobs.list(key_id))[0]["id"]
        code, out = await cli(tmp_path, "receipt", "get", job_id, "-o", str(tmp_path / "r.json"), url=net.url, key=secret)
        assert code == 0, out
        code, out = await cli(tmp_path, "balance", url=net.url, key=secret)
        price = json.loads((tmp_path / "r.json").read_text())["receipt"]["price"]
        assert code == 0 and f"available {receipts.usdc(1_250_000 - price)} USDC" in out and "2.500000 USDC/24 h" in out, out

        platform = net.cp.billing.platform.npub
        code, out = await cli(tmp_path, "receipt", "verify", str(tmp_path / "r.json"), "--platform", platform, "--node", ident.npub)
        assert code == 0 and "✓" in out, out
        doc = json.loads((tmp_path / "r.json").read_text())
        doc["receipt"]["output_tokens"] += 1
        (tmp_path / "bad.json").write_text(json.dumps(doc))
        code, out = await cli(tmp_path, "receipt", "verify", str(tmp_path / "bad.json"))
        assert code == 1 and "does NOT verify" in out and "signature does not match" in out, out
        code, out = await cli(tmp_path, "receipt", "verify", str(tmp_path / "r.json"), "--platform", keys.Identity.generate().npub)
        assert code == 1, out

        code, out = await cli(node_home, "payments", "-c", net.url)
        assert code == 0 and "unpaid" in out and job_id in out, out
        code, out = await cli(node_home, "payout", "-c", net.url)
        assert code == 0 and "claimed 1 receipts" in out, out
        payout_file = next((node_home / "payouts").glob("po_*.json"))
        code, out = await cli(tmp_path, "receipt", "verify", str(payout_file), "--platform", platform)
        assert code == 0 and "1 receipts" in out, out
        code, out = await cli(node_home, "payout", "-c", net.url)
        assert code == 0 and "nothing to claim" in out, out
        code, out = await cli(tmp_path, "pricing", url=net.url, key=secret)
        assert code == 0 and "platform fee 15 %" in out and "1.000000 USDC" in out, out
        async with net.client() as admin:
            assert (await admin.get("/api/v1/ledger/check")).json()["ok"]
