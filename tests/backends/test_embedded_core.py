"""The embedded backend's own guarantees: exact usage, stop strings, cancellation."""

from __future__ import annotations

import pytest

from infernet.backends.base import BackendError
from infernet.backends.embedded import EMBEDDED_MODEL, EmbeddedBackend, _StopScanner


def test_stop_scanner_holds_back_partial_matches():
    s = _StopScanner(["END"])
    assert s.feed("abc E") == ("abc ", False)
    assert s.feed("N") == ("", False)
    assert s.feed("Dxyz") == ("", True)
    s = _StopScanner(["END"])
    assert s.feed("E") == ("", False)
    assert s.feed("x") == ("Ex", False)
    assert s.flush() == ""


@pytest.fixture(scope="module")
def backend():
    pytest.importorskip("llama_cpp")
    return EmbeddedBackend(n_ctx=512)


pytestmark = pytest.mark.slow


async def test_usage_counts_every_generated_token(backend):
    body = {"model": EMBEDDED_MODEL, "messages": [{"role": "user", "content": "Count from one to twenty."}], "temperature": 0, "max_tokens": 25}
    chunks = [c async for c in backend.chat(body)]
    final = chunks[-1]
    assert final.finish_reason in ("stop", "length")
    text = "".join(c.text for c in chunks)
    prompt, _ = backend.chat_prompt(body["messages"])
    assert final.usage.prompt_tokens == len(prompt)
    assert final.usage.completion_tokens == len(backend.llm.tokenize(text.encode(), add_bos=False, special=False))


async def test_closing_the_stream_stops_generation_with_running_usage(backend):
    body = {"model": EMBEDDED_MODEL, "messages": [{"role": "user", "content": "Write a long poem."}], "max_tokens": 300, "seed": 1}
    stream = backend.chat(body)
    seen = []
    async for chunk in stream:
        seen.append(chunk)
        if len(seen) == 4:
            break
    await stream.aclose()
    assert seen[-1].usage is not None and 1 <= seen[-1].usage.completion_tokens <= 8
    # The engine is free again at once: another request completes.
    again = [c async for c in backend.chat({**body, "max_tokens": 3})]
    assert again[-1].usage.completion_tokens <= 3


async def test_prompt_over_the_context_is_a_clear_error(backend):
    body = {"model": EMBEDDED_MODEL, "messages": [{"role": "user", "content": "word " * 2000}]}
    with pytest.raises(BackendError) as caught:
        [c async for c in backend.chat(body)]
    assert caught.value.code == "context_length_exceeded"


async def test_other_models_are_refused(backend):
    with pytest.raises(BackendError) as caught:
        [c async for c in backend.chat({"model": "llama3", "messages": [{"role": "user", "content": "x"}]})]
    assert caught.value.code == "model_not_found"


async def test_a_seed_belongs_to_its_request_and_unseeded_requests_draw_afresh(backend):
    ask = {"model": EMBEDDED_MODEL, "messages": [{"role": "user", "content": "Say a random word."}], "temperature": 1.0, "max_tokens": 16}

    async def text(body: dict) -> str:
        return "".join([c.text async for c in backend.chat(body)])

    seeded = await text({**ask, "seed": 123})
    unseeded = [await text(ask) for _ in range(4)]
    assert await text({**ask, "seed": 123}) == seeded  # a seed repeats
    # Unseeded requests after a seeded one do not repeat it, nor each other.
    assert seeded not in unseeded and len(set(unseeded)) >= 3, (seeded, unseeded)


def test_the_control_planes_token_count_matches_the_engines(backend):
    from infernet.control.money.metering import Tokenizers

    count = Tokenizers().get(EMBEDDED_MODEL)
    assert count is not None
    text = "The capital of France is Paris. Ünïcödé ✓ 12345"
    assert count(text) == len(backend.llm.tokenize(text.encode(), add_bos=False, special=False))
