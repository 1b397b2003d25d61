"""`POST /v1/embeddings` is routed like any other job and answers in the OpenAI shape."""

from __future__ import annotations

from infernet.backends.fake import FakeBackend
from infernet.protocol.messages import ModelAd
from tests.harness import Network


class EmbeddingFake(FakeBackend):
    async def models(self) -> list[ModelAd]:
        return [ModelAd(name="fake-embed", kind="embedding"), ModelAd(name="fake-model")]


async def test_embeddings_roundtrip_and_kind_mismatch(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(EmbeddingFake(models=("fake-embed", "fake-model")))
        async with net.client() as c:
            r = await c.post("/v1/embeddings", json={"model": "fake-embed", "input": ["a b", "ccc"]})
            assert r.status_code == 200, r.text
            body = r.json()
            assert [d["index"] for d in body["data"]] == [0, 1]
            assert body["data"][1]["embedding"][0] == 3.0
            assert body["usage"]["prompt_tokens"] == 3
            wrong = await c.post("/v1/chat/completions", json={"model": "fake-embed", "messages": [{"role": "user", "content": "x"}]})
            assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "model"
            wrong = await c.post("/v1/embeddings", json={"model": "fake-model", "input": "x"})
            assert wrong.status_code == 400
            empty = await c.post("/v1/embeddings", json={"model": "fake-embed", "input": []})
            assert empty.status_code == 400
        await net.wait_for(lambda: not net.cp.driver.jobs)
        rows = await net.cp.store.jobs.list()
        assert [r["status"] for r in rows] == ["completed"]
        assert rows[0]["result"]["data"][0]["object"] == "embedding"
