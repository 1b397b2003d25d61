"""What a node may say: forged, replayed, expired and wrong-key connects and frames are refused,
and a node's frames only ever touch the jobs assigned to it."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest
import websockets

from infernet.backends.fake import FakeBackend
from infernet.protocol import auth, keys, receipts
from infernet.protocol.messages import Done, Fail, Heartbeat, Tokens, Usage
from tests.control.money.books import funded_key
from tests.control.rawnode import RawNode, header
from tests.harness import Network


def b64(d: dict) -> str:
    return base64.b64encode(json.dumps(d).encode()).decode()


def _forgeries(ident: keys.Identity) -> dict[str, str]:
    other = keys.Identity.generate()
    good = json.loads(base64.b64decode(header(ident)))
    wrong_key = {**json.loads(base64.b64decode(header(other))), "pubkey": ident.pubkey}
    bad_sig = {**good, "sig": good["sig"][:-2] + ("00" if good["sig"][-2:] != "00" else "11")}
    return {
        "expired": header(ident, now=time.time() - 120),
        "from the future": header(ident, now=time.time() + 120),
        "wrong key": b64(wrong_key),
        "bad signature": b64(bad_sig),
        "other path": auth.sign_request(ident, "GET", "/api/v1/nodes/connect?x=1"),
        "other method": auth.sign_request(ident, "POST", "/api/v1/nodes/connect"),
        "version 2": b64({**good, "v": 2}),
        "garbage": "not-base64!",
    }


async def test_forged_expired_and_wrong_key_connects_are_refused(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        ident = keys.Identity.generate()
        for why, forged in _forgeries(ident).items():
            with pytest.raises(websockets.InvalidStatus):
                await RawNode.connect(net.url, ident, forged)
            assert ident.pubkey not in net.cp.sessions.nodes, why
        with pytest.raises(websockets.InvalidStatus):  # no header at all
            await websockets.connect(net.url.replace("http", "ws") + "/api/v1/nodes/connect")


async def test_a_replayed_connect_is_refused(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        ident = keys.Identity.generate()
        signed = header(ident)
        node = await RawNode.connect(net.url, ident, signed)
        await node.close()
        with pytest.raises(websockets.InvalidStatus):
            await RawNode.connect(net.url, ident, signed)


async def test_frames_signed_by_another_key_replayed_or_from_another_session_close_the_connection(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        ident = keys.Identity.generate()

        node = await RawNode.connect(net.url, ident)
        node.signer = auth.FrameSigner(keys.Identity.generate(), bytes.fromhex(node.welcome.session), node.welcome.ephemeral)
        await node.hello()
        assert await node.closed_code() == 4400

        node = await RawNode.connect(net.url, ident)
        await node.hello()
        await net.wait_for(lambda: ident.pubkey in net.cp.sessions.nodes)
        sealed = await node.send(Heartbeat(active=0))
        await node.ws.send(sealed)  # the same frame again
        assert await node.closed_code() == 4400
        await net.wait_for(lambda: ident.pubkey not in net.cp.sessions.nodes)

        first = await RawNode.connect(net.url, ident)
        await first.hello()
        old = await first.send(Heartbeat(active=0))
        second = await RawNode.connect(net.url, ident)
        await second.ws.send(old)  # a good frame, but sealed for the first session
        assert await second.closed_code() == 4400
        await first.close()


async def test_a_hello_for_another_key_is_refused(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        ident, victim = keys.Identity.generate(), keys.Identity.generate()
        node = await RawNode.connect(net.url, ident)
        await node.hello(pubkey=victim.pubkey)
        assert await node.closed_code() == 4400
        assert victim.pubkey not in net.cp.sessions.nodes and ident.pubkey not in net.cp.sessions.nodes


async def test_a_node_cannot_touch_a_job_assigned_to_another(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        honest = await net.add_node(FakeBackend(reply=" ".join(["ok"] * 30), delay_s=0.01))
        rogue_id = keys.Identity.generate()
        rogue = await RawNode.connect(net.url, rogue_id)
        await rogue.hello(models=("other-model",))
        await net.wait_for(lambda: rogue_id.pubkey in net.cp.sessions.nodes)
        async with net.client() as admin:
            key = await funded_key(admin, "2.00")
        async with net.client(key["key"]) as c:
            resp = asyncio.ensure_future(c.post("/v1/chat/completions", json={"model": "fake-model", "messages": [{"role": "user", "content": "q"}]}))
            await net.wait_for(lambda: any(j.node_id == honest.node.identity.pubkey for j in net.cp.driver.jobs.values()))
            job_id = next(iter(net.cp.driver.jobs))
            forged = receipts.complete(
                receipts.terms(job_id=job_id, node_pubkey=rogue_id.pubkey, platform_pubkey=net.cp.billing.platform.pubkey, client=key["id"], model="fake-model", input_rate=10**9, output_rate=10**9, fee_bps=0, chain="base"),
                1, 10**6, int(time.time()),
            )
            await rogue.send(Tokens(job_id=job_id, text=" INJECTED"))
            await rogue.send(Fail(job_id=job_id, message="rogue says it failed"))
            await rogue.send(Done(job_id=job_id, usage=Usage(1, 10**6), receipt=forged, signature=receipts.sign(rogue_id, forged)))
            r = await resp
            assert r.status_code == 200
            assert r.json()["choices"][0]["message"]["content"] == " ".join(["ok"] * 30)
            assert r.json()["usage"]["completion_tokens"] == 30
            doc = (await c.get(f"/api/v1/jobs/{job_id}/receipt")).json()
        assert doc["receipt"]["node_pubkey"] == honest.node.identity.pubkey and doc["receipt"]["output_tokens"] == 30
        assert (await net.cp.billing.ledger.node_view(rogue_id.pubkey))["unpaid"] == 0
        await rogue.close()


async def test_signed_node_http_requests_are_checked_like_connects(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        import httpx

        ident = keys.Identity.generate()
        async with httpx.AsyncClient(base_url=net.url) as c:
            path = "/api/v1/node/payments?receipts=5"
            good = auth.sign_request(ident, "GET", path)
            r = await c.get(path, headers={auth.AUTH_HEADER: good})
            assert r.status_code == 200 and r.json()["node_pubkey"] == ident.pubkey and r.json()["unpaid"] == 0
            r = await c.get(path, headers={auth.AUTH_HEADER: good})
            assert r.status_code == 401 and "replayed" in r.json()["error"]["message"]
            for why, forged in {
                "expired": auth.sign_request(ident, "GET", path, now=time.time() - 300),
                "other query": auth.sign_request(ident, "GET", "/api/v1/node/payments?receipts=6"),
            }.items():
                r = await c.get(path, headers={auth.AUTH_HEADER: forged})
                assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_signature", why
            body = b'{"limit": 5}'
            signed = auth.sign_request(ident, "POST", "/api/v1/node/payouts", body)
            r = await c.post("/api/v1/node/payouts", content=b'{"limit": 6}', headers={auth.AUTH_HEADER: signed})
            assert r.status_code == 401  # the body is covered by the signature
            r = await c.post("/api/v1/node/payouts", content=body, headers={auth.AUTH_HEADER: auth.sign_request(ident, "POST", "/api/v1/node/payouts", body)})
            assert r.status_code == 404 and r.json()["error"]["code"] == "nothing_to_claim"
