"""Engines that speak the OpenAI HTTP API: vLLM, SGLang, llama.cpp server, or any other.

Streams `/v1/chat/completions` and `/v1/completions` with `stream_options.include_usage`,
so usage is the engine's own count. Each engine's native health/info endpoint tells the
node its context length and how many requests it runs at once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from infernet.backends.base import BackendError, Chunk, Health
from infernet.protocol.messages import ModelAd, Usage

_TIMEOUT = httpx.Timeout(connect=5.0, read=300.0, write=30.0, pool=30.0)


class OpenAICompatBackend:
    def __init__(self, base_url: str, *, engine: str = "openai", model: str | None = None, api_key: str | None = None, client: httpx.AsyncClient | None = None) -> None:
        self.name = engine
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.AsyncClient(base_url=self.base_url, timeout=_TIMEOUT, headers=headers)

    # -- info -----------------------------------------------------------------------------

    async def _get(self, path: str) -> Any:
        try:
            r = await self._client.get(path, timeout=5.0)
        except httpx.HTTPError as exc:
            raise BackendError(f"{self.name} at {self.base_url} is unreachable: {exc}", retryable=True) from None
        if r.status_code != 200:
            raise BackendError(f"{self.name} {path} answered HTTP {r.status_code}", retryable=True)
        try:
            return r.json()
        except ValueError:
            raise BackendError(f"{self.name} {path} returned invalid JSON", retryable=True) from None

    async def health(self) -> Health:
        path = {"vllm": "/health", "sglang": "/health", "llamacpp": "/health"}.get(self.name, "/v1/models")
        try:
            r = await self._client.get(path, timeout=5.0)
        except httpx.HTTPError as exc:
            return Health(False, f"{self.name} at {self.base_url} is unreachable: {exc}")
        if r.status_code != 200:
            return Health(False, f"{self.name} {path} answered HTTP {r.status_code}")
        return Health(True, f"{self.name} at {self.base_url}")

    async def models(self) -> list[ModelAd]:
        data = await self._get("/v1/models")
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise BackendError(f"{self.name} /v1/models returned no model list", retryable=True)
        out = []
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                ctx = item.get("max_model_len") or (item.get("meta") or {}).get("n_ctx_train")
                out.append(ModelAd(name=item["id"], context_length=int(ctx) if isinstance(ctx, int) else None))
        if self.model:
            out = [m for m in out if m.name == self.model] or [ModelAd(name=self.model)]
        return out

    async def capacity(self) -> int:
        if self.name == "llamacpp":
            try:
                props = await self._get("/props")
                return max(1, int(props.get("total_slots", 1)))
            except (BackendError, TypeError, ValueError):
                return 1
        if self.name in ("vllm", "sglang"):
            return 16  # continuous batching: many requests share the GPU
        return 4

    # -- generation -----------------------------------------------------------------------

    def chat(self, body: dict[str, Any]) -> AsyncIterator[Chunk]:
        return self._stream("/v1/chat/completions", body, chat=True)

    def complete(self, body: dict[str, Any]) -> AsyncIterator[Chunk]:
        return self._stream("/v1/completions", body, chat=False)

    async def _stream(self, path: str, body: dict[str, Any], *, chat: bool) -> AsyncIterator[Chunk]:
        payload = {**body, "stream": True, "stream_options": {"include_usage": True}}
        if self.name == "vllm":
            payload["stream_options"]["continuous_usage_stats"] = True
        usage: Usage | None = None
        finish: str | None = None
        try:
            async with self._client.stream("POST", path, json=payload) as r:
                if r.status_code != 200:
                    detail = (await r.aread()).decode("utf-8", "replace")[:300]
                    raise BackendError(
                        f"{self.name} answered HTTP {r.status_code}: {_error_text(detail)}",
                        retryable=r.status_code >= 500 or r.status_code in (404, 429),
                        code="model_not_found" if r.status_code == 404 else "backend_error",
                    )
                async for line in r.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        event = json.loads(data)
                    except ValueError:
                        raise BackendError(f"{self.name} sent invalid JSON in its stream: {data[:80]!r}") from None
                    if not isinstance(event, dict):
                        raise BackendError(f"{self.name} sent an unexpected stream event")
                    if "error" in event:
                        raise BackendError(f"{self.name} error: {_error_text(json.dumps(event))}")
                    if isinstance(event.get("usage"), dict):
                        u = event["usage"]
                        usage = Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0))
                    for choice in event.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
                        if text:
                            yield Chunk(text=text, usage=usage)
        except httpx.HTTPError as exc:
            raise BackendError(f"{self.name} connection failed: {exc}", retryable=usage is None) from None
        if finish is None:
            raise BackendError(f"{self.name} ended the stream before finishing (truncated)")
        if usage is None:
            raise BackendError(f"{self.name} did not report token usage")
        yield Chunk(finish_reason=finish, usage=usage)

    async def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            r = await self._client.post("/v1/embeddings", json=body)
        except httpx.HTTPError as exc:
            raise BackendError(f"{self.name} connection failed: {exc}", retryable=True) from None
        if r.status_code != 200:
            raise BackendError(f"{self.name} embeddings answered HTTP {r.status_code}: {_error_text(r.text)}")
        try:
            return r.json()
        except ValueError:
            raise BackendError(f"{self.name} returned invalid JSON for embeddings") from None

    async def aclose(self) -> None:
        await self._client.aclose()


def _error_text(raw: str) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return raw.strip()[:200]
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        return str(err.get("message") or err)[:200]
    return str(err)[:200]
