"""all-MiniLM-L6-v2 int8 on the embedded backend: faithful to the fp32 model, and served
through the network as OpenAI's `POST /v1/embeddings`."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from infernet.backends import minilm
from infernet.backends.embedded import EmbeddedBackend
from infernet.backends.fake import FakeBackend
from tests.harness import ADMIN_KEY, Network

pytestmark = pytest.mark.skipif(not minilm.available(), reason="onnxruntime, tokenizers or the MiniLM packages are missing")

REFERENCE = json.loads((Path(__file__).parent.parent / "fixtures" / "embeddings" / "minilm_reference.json").read_text())
# int8 weights lose the most on inputs of one or two word pieces ("ok", "?!") and on the
# 256-token repetitive text; measured 0.9964, 0.9966 and 0.9988. They keep a looser floor
# so a regression there still shows, instead of being dropped from the set.
DEGENERATE = {"ok", "?!"} | {s for s in REFERENCE["sentences"] if len(s) > 1000}


def test_vectors_match_the_fp32_reference():
    vectors, tokens = minilm.shared().encode(REFERENCE["sentences"])
    assert vectors.shape == (len(REFERENCE["sentences"]), 384)
    assert tokens == sum(REFERENCE["token_counts"])
    ref = np.array(REFERENCE["vectors"], dtype=np.float32)
    cosines = (vectors * ref).sum(axis=1) / np.linalg.norm(ref, axis=1)
    for sentence, cos in zip(REFERENCE["sentences"], cosines):
        floor = 0.995 if sentence in DEGENERATE else 0.999
        assert cos >= floor, f"{sentence[:40]!r}: cosine {cos:.5f} < {floor}"
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_batching_does_not_change_a_vector():
    sentences = REFERENCE["sentences"]
    together, _ = minilm.shared().encode(sentences)
    alone = np.stack([minilm.shared().encode([s])[0][0] for s in sentences])
    assert np.min((together * alone).sum(axis=1)) > 0.99999


def test_similar_sentences_are_closer_than_unrelated_ones():
    v, _ = minilm.shared().encode(["The capital of France is Paris.", "Paris is the capital city of France.", "The stock market fell sharply on Tuesday."])
    assert v[0] @ v[1] > 0.8 > 0.3 > v[0] @ v[2]


async def test_embedded_backend_advertises_and_serves_the_model():
    backend = EmbeddedBackend()
    ads = {m.name: m for m in await backend.models()}
    assert ads["all-minilm-l6-v2"].kind == "embedding" and ads["all-minilm-l6-v2"].context_length == 256
    out = await backend.embed({"model": "all-minilm-l6-v2", "input": ["hello world", "bonjour"], "encoding_format": "float"})
    assert [d["index"] for d in out["data"]] == [0, 1] and len(out["data"][0]["embedding"]) == 384
    assert out["usage"]["prompt_tokens"] == out["usage"]["total_tokens"] > 0


async def test_embeddings_through_the_network_float_base64_and_the_openai_sdk(tmp_path):
    import openai

    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(EmbeddedBackend())
        async with net.client() as c:
            models = (await c.get("/v1/models")).json()["data"]
            assert {"id": "all-minilm-l6-v2", "kind": "embedding"}.items() <= next(m for m in models if m["id"] == "all-minilm-l6-v2").items()
            r = await c.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": REFERENCE["sentences"][:3]})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["object"] == "list" and body["model"] == "all-minilm-l6-v2"
            assert [d["object"] for d in body["data"]] == ["embedding"] * 3
            assert body["usage"] == {"prompt_tokens": sum(REFERENCE["token_counts"][:3]), "total_tokens": sum(REFERENCE["token_counts"][:3])}
            ref = np.array(REFERENCE["vectors"][:3])
            got = np.array([d["embedding"] for d in body["data"]])
            assert np.min((got * ref).sum(axis=1)) >= 0.999
            r = await c.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": "The capital of France is Paris.", "encoding_format": "base64"})
            raw = base64.b64decode(r.json()["data"][0]["embedding"])
            assert np.allclose(struct.unpack("<384f", raw), REFERENCE["vectors"][0], atol=0.01)
            for bad, code in [
                ({"model": "all-minilm-l6-v2", "input": []}, "invalid_value"),
                ({"model": "all-minilm-l6-v2", "input": "x", "encoding_format": "hex"}, None),
                ({"model": "all-minilm-l6-v2", "input": "x", "dimensions": 128}, "invalid_request"),
            ]:
                r = await c.post("/v1/embeddings", json=bad)
                assert r.status_code == 400, r.text
                assert set(r.json()["error"]) == {"message", "type", "param", "code"}
                if code == "invalid_request":
                    assert r.json()["error"]["code"] == code and "384" in r.json()["error"]["message"]
        sdk = openai.AsyncOpenAI(base_url=net.url + "/v1", api_key=ADMIN_KEY)
        res = await sdk.embeddings.create(model="all-minilm-l6-v2", input=["Paris is the capital city of France."])  # the SDK asks for base64
        assert len(res.data[0].embedding) == 384
        assert float(np.dot(res.data[0].embedding, REFERENCE["vectors"][1])) >= 0.999
        assert res.usage.prompt_tokens == REFERENCE["token_counts"][1]
        await sdk.close()


async def test_a_chat_model_on_the_embeddings_route_is_a_clear_400(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        await net.add_node(FakeBackend())
        async with net.client() as c:
            r = await c.post("/v1/embeddings", json={"model": "fake-model", "input": "x"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "model_not_supported"
