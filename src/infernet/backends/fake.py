"""An in-memory engine for tests: deterministic, instant, with real-looking usage.

It "tokenizes" by whitespace, so usage is exactly checkable. `script` lets a test make it
fail, stall, or lie.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from infernet.backends.base import BackendError, Chunk, Health
from infernet.protocol.messages import ModelAd, Usage


def _prompt_text(body: dict[str, Any]) -> str:
    if "messages" in body:
        return " ".join(str(m.get("content") or "") for m in body["messages"])
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else " ".join(map(str, prompt))


class FakeBackend:
    name = "fake"

    def __init__(
        self,
        models: tuple[str, ...] = ("fake-model",),
        *,
        reply: str | None = None,
        slots: int = 4,
        delay_s: float = 0.0,
        fail: str | None = None,
        fail_after: int | None = None,
    ) -> None:
        self._models = models
        self.reply = reply
        self.slots = slots
        self.delay_s = delay_s
        self.fail = fail
        self.fail_after = fail_after
        self.calls = 0
        self.cancelled = 0

    async def health(self) -> Health:
        return Health(True, "fake engine")

    async def models(self) -> list[ModelAd]:
        return [ModelAd(name=m, context_length=4096) for m in self._models]

    async def capacity(self) -> int:
        return self.slots

    def _answer(self, body: dict[str, Any]) -> list[str]:
        text = self.reply if self.reply is not None else "echo: " + _prompt_text(body)
        words = text.split()
        limit = body.get("max_tokens")
        return words[:limit] if limit else words

    async def _stream(self, body: dict[str, Any]) -> AsyncIterator[Chunk]:
        self.calls += 1
        if body.get("model") not in self._models:
            raise BackendError(f"model {body.get('model')!r} not found", code="model_not_found", retryable=True)
        if self.fail and self.fail_after is None:
            raise BackendError(self.fail, retryable=True)
        words = self._answer(body)
        prompt_tokens = len(_prompt_text(body).split())
        sent = 0
        try:
            for i, word in enumerate(words):
                if self.fail and self.fail_after is not None and i >= self.fail_after:
                    raise BackendError(self.fail)
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                yield Chunk(text=word if i == 0 else " " + word)
                sent += 1
        except (GeneratorExit, asyncio.CancelledError):
            self.cancelled += 1
            raise
        limit = body.get("max_tokens")
        finish = "length" if limit and sent >= limit and len(self._answer({**body, "max_tokens": None})) > sent else "stop"
        yield Chunk(finish_reason=finish, usage=Usage(prompt_tokens, sent))

    def chat(self, body: dict[str, Any]) -> AsyncIterator[Chunk]:
        return self._stream(body)

    def complete(self, body: dict[str, Any]) -> AsyncIterator[Chunk]:
        return self._stream(body)

    async def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": [float(len(str(t))), 1.0]} for i, t in enumerate(inputs)]
        tokens = sum(len(str(t).split()) for t in inputs)
        return {"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    async def count_tokens(self, text: str) -> int | None:
        return len(text.split())

    async def aclose(self) -> None:
        return None
