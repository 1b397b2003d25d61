"""An in-memory engine for tests: deterministic, instant, with real-looking usage.

It "tokenizes" by whitespace, so usage is exactly checkable. `script` lets a test make it
fail, stall, or lie. `features` / `modalities` are what it advertises; with `tool_call`
set it answers a request that offers tools with that call (arguments in two pieces), and it
returns logprobs when asked (token i: -0.1 * (i + 1), alternatives `alt0`, `alt1`, ...).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from infernet.backends.base import BackendError, Chunk, Health
from infernet.protocol.messages import ModelAd, Usage


def _prompt_text(body: dict[str, Any]) -> str:
    if "messages" in body:
        return " ".join(str(m.get("content") or "") for m in body["messages"])
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else " ".join(map(str, prompt))


def _logprob(token: str, i: int, top: int) -> dict[str, Any]:
    lp = -0.1 * (i + 1)
    alts = [{"token": token, "logprob": lp, "bytes": list(token.encode())}] + [{"token": f"alt{k}", "logprob": lp - 1 - k, "bytes": list(f"alt{k}".encode())} for k in range(top - 1)]
    return {"token": token, "logprob": lp, "bytes": list(token.encode()), "top_logprobs": alts[:top]}


class FakeBackend:
    name = "fake"

    def __init__(
        self,
        models: tuple[str, ...] = ("fake-model",),
        *,
        reply: str | None = None,
        slots: int | None = 4,  # None: an engine that does not say (the node learns it)
        delay_s: float = 0.0,
        fail: str | None = None,
        fail_after: int | None = None,
        features: tuple[str, ...] = (),
        modalities: tuple[str, ...] = ("text",),
        tool_call: tuple[str, dict[str, Any]] | None = None,
    ) -> None:
        self.features = features
        self.modalities = modalities
        self.tool_call = tool_call
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
        return [ModelAd(name=m, context_length=4096, features=self.features, modalities=self.modalities) for m in self._models]

    async def capacity(self) -> int | None:
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
        if self.tool_call is not None and body.get("tools") and body.get("tool_choice") != "none":
            name, args = self.tool_call[0], json.dumps(self.tool_call[1])
            half = len(args) // 2
            yield Chunk(tool_calls=[{"index": 0, "id": "call_fake1", "type": "function", "function": {"name": name, "arguments": args[:half]}}])
            yield Chunk(tool_calls=[{"index": 0, "function": {"arguments": args[half:]}}])
            yield Chunk(finish_reason="tool_calls", usage=Usage(prompt_tokens, len(args.split()) + 1))
            return
        want = body.get("logprobs")
        top = None if want in (None, False) else int(body.get("top_logprobs") or 0) if want is True else int(want)
        sent = 0
        try:
            for i, word in enumerate(words):
                if self.fail and self.fail_after is not None and i >= self.fail_after:
                    raise BackendError(self.fail)
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                piece = word if i == 0 else " " + word
                yield Chunk(text=piece, logprobs=None if top is None else [_logprob(piece, i, top)])
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
