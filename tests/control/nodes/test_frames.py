"""Frames of any size or kind: big jobs and results travel in parts under the socket limit,
and an odd frame from a node neither disconnects it nor touches its other jobs."""

from __future__ import annotations

import asyncio

from infernet.backends.fake import FakeBackend
from infernet.protocol import keys
from infernet.protocol.messages import (
    MAX_PIECE,
    Accept,
    Done,
    Fail,
    Hello,
    Job,
    ModelAd,
    Tokens,
    Usage,
    control_decoder,
    encode,
    pieces,
)
from tests.control.rawnode import RawNode
from tests.harness import Network

ASK = {"model": "fake-model", "messages": [{"role": "user", "content": "x"}]}


class LongContext(FakeBackend):
    """A fake engine whose model takes a 10M-token context (so a huge prompt is valid)."""

    async def models(self) -> list[ModelAd]:
        return [ModelAd(name=m, context_length=10_000_000) for m in self._models]


async def test_a_20_mib_prompt_over_the_context_is_refused_at_the_edge_and_nodes_stay(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        node = await net.add_node(FakeBackend(reply="fine"))
        huge = {"model": "fake-model", "messages": [{"role": "user", "content": "word " * (4 << 20)}]}
        async with net.client() as c:
            for stream in (False, True):
                r = await c.post("/v1/chat/completions", json={**huge, "stream": stream})
                assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded", r.text[:300]
            r = await c.post("/v1/chat/completions", json=ASK)
            assert r.status_code == 200
        assert node.node.status.connected and node.node.identity.pubkey in net.cp.sessions.nodes


async def test_a_job_bigger_than_a_socket_message_travels_in_parts(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        engine = LongContext(reply="got it")
        node = await net.add_node(engine)
        prompt = "é" * (9 << 20)  # 18 MiB of UTF-8: more than a node socket takes in one message
        async with net.client() as c:
            other = asyncio.create_task(c.post("/v1/chat/completions", json=ASK))
            r = await c.post("/v1/chat/completions", json={"model": "fake-model", "messages": [{"role": "user", "content": prompt}]})
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "got it", r.text[:300]
            assert (await other).status_code == 200
        assert node.node.status.connected and engine.calls == 2


async def test_text_frames_and_unknown_frame_types_are_skipped_not_fatal(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        ident = keys.Identity.generate()
        raw = await RawNode.connect(net.url, ident)
        await raw.hello(models=("fake-model",))
        await net.wait_for(lambda: ident.pubkey in net.cp.sessions.nodes)
        async with net.client() as c:
            ask = asyncio.create_task(c.post("/v1/chat/completions", json=ASK))
            job = control_decoder.decode(await raw.ws.recv())
            assert isinstance(job, Job)
            await raw.send(Accept(job_id=job.job_id))
            await raw.ws.send("a text message")  # node frames are binary
            sealed = raw.signer.seal(b'{"t":"telemetry","gpu_temp":71}')  # a frame type from a newer node
            await raw.ws.send(sealed)
            await raw.ws.send(raw.signer.seal(b"not json at all"))
            await raw.send(Tokens(job_id=job.job_id, text="still here"))
            await raw.send(Done(job_id=job.job_id, usage=Usage(1, 2)))
            r = await ask
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "still here"
        assert ident.pubkey in net.cp.sessions.nodes
        await raw.close()


async def test_a_big_result_from_a_node_arrives_in_parts(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        ident = keys.Identity.generate()
        raw = await RawNode.connect(net.url, ident)
        await raw.send(Hello(pubkey=ident.pubkey, backend="raw", models=[ModelAd(name="embed", kind="embedding")], capacity=1, tier="cpu"))
        await net.wait_for(lambda: ident.pubkey in net.cp.sessions.nodes)
        async with net.client() as c:
            ask = asyncio.create_task(c.post("/v1/embeddings", json={"model": "embed", "input": ["a"] * 2048}))
            job = control_decoder.decode(await raw.ws.recv())
            vectors = [{"object": "embedding", "index": i, "embedding": [0.123456789] * 384} for i in range(2048)]
            done = Done(job_id=job.job_id, usage=Usage(2048, 0), result={"object": "list", "data": vectors, "model": "embed", "usage": {"prompt_tokens": 2048, "total_tokens": 2048}})
            assert len(encode(done)) > 4 * MAX_PIECE
            await raw.send(Accept(job_id=job.job_id))
            for piece in pieces(done):
                await raw.ws.send(raw.signer.seal(piece))
            r = await ask
        assert r.status_code == 200 and len(r.json()["data"]) == 2048
        await raw.close()



async def test_a_signed_frame_nested_too_deep_is_skipped_and_the_node_keeps_its_job(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        ident = keys.Identity.generate()
        raw = await RawNode.connect(net.url, ident)
        await raw.hello(models=("fake-model",))
        await net.wait_for(lambda: ident.pubkey in net.cp.sessions.nodes)
        async with net.client() as c:
            ask = asyncio.create_task(c.post("/v1/chat/completions", json=ASK))
            job = control_decoder.decode(await raw.ws.recv())
            await raw.send(Accept(job_id=job.job_id))
            deep = b'{"t":"done","job_id":"%s","usage":{"prompt_tokens":1,"completion_tokens":1},"result":{"a":%s}}' % (job.job_id.encode(), b"[" * 5000 + b"]" * 5000)
            await raw.ws.send(raw.signer.seal(deep))  # msgspec refuses it with a RecursionError
            await raw.send(Tokens(job_id=job.job_id, text="still here"))
            await raw.send(Done(job_id=job.job_id, usage=Usage(1, 2)))
            r = await ask
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "still here"
        assert ident.pubkey in net.cp.sessions.nodes
        await raw.close()


async def test_a_frame_with_numbers_past_what_the_store_holds_is_skipped_and_the_job_still_ends(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        ident = keys.Identity.generate()
        raw = await RawNode.connect(net.url, ident)
        await raw.hello(models=("fake-model",))
        await net.wait_for(lambda: ident.pubkey in net.cp.sessions.nodes)
        async with net.client() as c:
            ask = asyncio.create_task(c.post("/v1/chat/completions", json=ASK))
            job = control_decoder.decode(await raw.ws.recv())
            await raw.send(Accept(job_id=job.job_id))
            await raw.send(Fail(job_id=job.job_id, message="too big to store", usage=Usage(2**64 - 1, 2**64 - 1)))
            await raw.send(Fail(job_id=job.job_id, message="the real failure", usage=Usage(1, 0)))
            r = await ask
        assert r.status_code == 502 and r.json()["error"]["message"] == "the real failure"
        await net.cp.driver.settled()
        row = await net.cp.store.jobs.get(job.job_id)
        assert row["status"] == "failed" and row["prompt_tokens"] == 1  # the final row is stored
        await raw.close()
