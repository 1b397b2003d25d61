"""Two control-plane processes sharing one PostgreSQL store: replay protection, rate limits and
the books hold across replicas, exactly as on one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import websockets

from infernet.backends.fake import FakeBackend
from infernet.control.store import Store
from infernet.node.daemon import Node
from infernet.protocol import keys, receipts
from tests.control.money.books import funded_key
from tests.control.money.test_ledger import run_random_books
from tests.control.nodes.test_node_auth import _forgeries
from tests.control.rawnode import RawNode, header
from tests.harness import ADMIN_KEY, Network, free_port

PG = os.environ.get("INFERNET_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REPO = Path(__file__).resolve().parents[2]


async def test_the_books_balance_on_postgresql(pg_url):
    store = await Store.open(pg_url)
    try:
        await run_random_books(store, jobs=400, seed=11)
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def replica(db_url: str, data_dir: Path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    proc = subprocess.Popen([sys.executable, "-m", "tests.control.replica", db_url, str(port), str(data_dir)], cwd=REPO, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as c:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    if (await c.get(url + "/healthz")).status_code == 200:
                        break
                if proc.poll() is not None:
                    raise RuntimeError("the replica exited")
                await asyncio.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.asynccontextmanager
async def node_on(url: str, backend: FakeBackend):
    node = Node(url, keys.Identity.generate(), backend)
    stop = asyncio.Event()
    task = asyncio.create_task(node.run(stop))
    try:
        while not node.status.connected:
            await asyncio.sleep(0.02)
        yield node
    finally:
        stop.set()
        await task


async def test_two_replicas_share_nonces_rate_limits_and_books(pg_url, tmp_path):
    async with Network.start(db_url=pg_url, tmp=tmp_path) as a, replica(pg_url, tmp_path) as b_url:
        # A connect signed once works on one replica, and is a replay on the other.
        ident = keys.Identity.generate()
        signed = header(ident)
        first = await RawNode.connect(a.url, ident, signed)
        with pytest.raises(websockets.InvalidStatus):
            await RawNode.connect(b_url, ident, signed)
        await first.close()
        signed = header(ident)
        await (await RawNode.connect(b_url, ident, signed)).close()
        with pytest.raises(websockets.InvalidStatus):
            await RawNode.connect(a.url, ident, signed)
        for why, forged in _forgeries(ident).items():
            with pytest.raises(websockets.InvalidStatus):
                await RawNode.connect(b_url, ident, forged)

        # One key, a limit of 3 requests a minute, spread over both replicas.
        await a.add_node(FakeBackend(reply="from a"))
        async with node_on(b_url, FakeBackend(reply="from b")) as node_b:
            async with a.client() as admin:
                key = await funded_key(admin, "3.00", rate_limit=3)
            chat = {"model": "fake-model", "messages": [{"role": "user", "content": "a b"}]}
            headers = {"Authorization": f"Bearer {key['key']}"}
            async with httpx.AsyncClient(headers=headers, timeout=30) as c:
                codes = [(await c.post(u + "/v1/chat/completions", json=chat)).status_code for u in (a.url, b_url, b_url, a.url)]
                assert codes == [200, 200, 200, 429]
                ids = [j["id"] for j in (await c.get(a.url + "/api/v1/jobs")).json()["data"]]
                docs = [(await c.get(b_url + f"/api/v1/jobs/{i}/receipt")).json() for i in ids]
            plat = (await httpx.AsyncClient().get(b_url + "/api/v1/platform")).json()["pubkey"]
            assert plat == a.cp.billing.platform.pubkey  # replicas share the platform key
            assert all(receipts.verify(d, platform_pubkey=plat) == [] for d in docs)
            assert {d["receipt"]["node_pubkey"] for d in docs} == {node_b.identity.pubkey, a.nodes[0].node.identity.pubkey}
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as admin:
                bal = (await admin.get(b_url + "/api/v1/balance", params={"key_id": key["id"]})).json()
                assert bal["available"] == 3_000_000 - sum(d["receipt"]["price"] for d in docs) and bal["held"] == 0
                assert (await admin.get(b_url + "/api/v1/ledger/check")).json() == {"ok": True, "problems": []}
