"""Engines that speak the OpenAI HTTP API: vLLM, SGLang, llama.cpp server, or any other.

Generation streams `/v1/chat/completions` and `/v1/completions` with
`stream_options.include_usage`, so usage is the engine's own count. Each engine's native
endpoints tell the node what the OpenAI API does not: readiness, context length, and how
many requests it runs at once (see `info`).

Capacity (jobs the node takes at once; the node never takes more):
- llama.cpp: its slots (`/props` `total_slots`, else the length of `/slots`), else 1.
- SGLang: `max_running_requests` from `/get_server_info`, capped at `BATCH_CAP`.
- vLLM: it does not publish `max_num_seqs` over HTTP, and anything else says nothing: the
  node learns the limit from the engine's latency (`node/capacity.py`).
An operator's `--capacity` overrides all of these.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import httpx
import msgspec

from infernet.backends._http import (
    INFO_TIMEOUT,
    LIMITS,
    TIMEOUT,
    embedding_inputs,
    embedding_response,
    error_text,
    lines,
    status_error,
    stream_event,
    unreachable,
)
from infernet.backends.base import BackendError, Chunk, Health
from infernet.protocol.messages import FEATURES, ModelAd, Usage, call_text

log = logging.getLogger("infernet.backends")

BATCH_DEFAULT = 32
BATCH_CAP = 64
_DEFAULT_CAPACITY = {"sglang": BATCH_DEFAULT, "llamacpp": 1}  # vLLM and others: learned


@dataclass
class EngineInfo:
    """What an engine says about itself, from its native endpoints."""

    ready: bool
    detail: str
    version: str | None = None
    models: list[dict[str, Any]] = field(default_factory=list)  # /v1/models entries
    context_length: int | None = None
    slots: int | None = None
    embedding: bool = False
    raw: dict[str, Any] = field(default_factory=dict)


def _as_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


class OpenAICompatBackend:
    def __init__(
        self,
        base_url: str,
        *,
        engine: str = "openai",
        model: str | None = None,
        api_key: str | None = None,
        capacity: int | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = engine
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.model = model
        self._capacity = capacity
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.AsyncClient(base_url=self.base_url, timeout=TIMEOUT, limits=LIMITS, headers=headers)
        self._aliases: dict[str, str] = {}  # advertised name -> the engine's model id
        self._warned_usage = False
        # While a request runs, heartbeats reuse what the engine last said: llama-cpp-python's
        # server interrupts a running generation whenever any other request (even
        # /v1/models) waits for its lock, and a busy engine has nothing new to say anyway.
        self._inflight = 0
        self._last_models: list[ModelAd] | None = None
        self._last_capacity: int | None = None
        self._vllm_version: tuple[int, ...] | None = None

    # -- info -----------------------------------------------------------------------------

    async def _get(self, path: str, *, optional: bool = False) -> Any:
        """GET a JSON endpoint. With `optional`, a 404 (an engine without it) is None."""
        try:
            r = await self._client.get(path, timeout=INFO_TIMEOUT)
        except httpx.HTTPError as exc:
            raise unreachable(self.name, self.base_url, exc) from None
        if optional and r.status_code in (404, 405):
            return None
        if r.status_code != 200:
            raise status_error(self.name, r.status_code, r.content)
        if not r.content.strip():
            return {}
        try:
            return r.json()
        except ValueError:
            raise BackendError(f"{self.name} {path} returned invalid JSON", retryable=True) from None

    async def _ready(self) -> tuple[bool, str]:
        """The engine's own health endpoint; engines without one are ready when they list models."""
        path = "/health" if self.name in ("vllm", "sglang", "llamacpp") else "/v1/models"
        try:
            r = await self._client.get(path, timeout=INFO_TIMEOUT)
        except httpx.HTTPError as exc:
            return False, unreachable(self.name, self.base_url, exc).message
        if r.status_code == 404 and path == "/health":  # llama-cpp-python's server has no /health
            return await self._ready_by_models()
        if r.status_code == 503:
            return False, f"{self.name} is not ready: {error_text(r.content)}"
        if r.status_code != 200:
            return False, f"{self.name} {path} answered HTTP {r.status_code}: {error_text(r.content)}"
        return True, f"{self.name} at {self.base_url}"

    async def _ready_by_models(self) -> tuple[bool, str]:
        try:
            await self._get("/v1/models")
        except BackendError as exc:
            return False, exc.message
        return True, f"{self.name} at {self.base_url}"

    async def info(self) -> EngineInfo:
        ready, detail = await self._ready()
        if not ready:
            return EngineInfo(False, detail)
        data = await self._get("/v1/models")
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise BackendError(f"{self.name} /v1/models returned no model list", retryable=True)
        info = EngineInfo(True, detail, models=[m for m in items if isinstance(m, dict) and isinstance(m.get("id"), str)])
        if self.name == "vllm":
            version = await self._get("/version", optional=True)
            info.version = (version or {}).get("version")
        elif self.name == "sglang":
            model_info = await self._get("/get_model_info", optional=True) or {}
            server = await self._get("/get_server_info", optional=True)
            if server is None:  # renamed in later SGLang releases
                server = await self._get("/server_info", optional=True)
            server = server or {}
            states = server.get("internal_states") or [{}]
            info.version = server.get("version")
            info.context_length = _as_int(server.get("context_length")) or _as_int(model_info.get("context_length"))
            running = _as_int(server.get("max_running_requests")) or _as_int((states[0] if isinstance(states, list) and states else {}).get("max_running_requests"))
            info.slots = min(running, BATCH_CAP) if running else None
            info.embedding = model_info.get("is_generation") is False
            info.raw = {"model_info": model_info, "server_info": server}
        elif self.name == "llamacpp":
            props = await self._get("/props", optional=True)
            if props:
                info.slots = _as_int(props.get("total_slots"))
                info.context_length = _as_int((props.get("default_generation_settings") or {}).get("n_ctx"))
                info.version = props.get("build_info")
                info.raw = {"props": props}
            if info.slots is None:
                slots = await self._get("/slots", optional=True)
                if isinstance(slots, list) and slots:
                    info.slots = len(slots)
                    info.context_length = info.context_length or _as_int(slots[0].get("n_ctx"))
        return info

    async def health(self) -> Health:
        try:
            info = await self.info()
        except BackendError as exc:
            return Health(False, exc.message)
        facts = {"version": info.version, "slots": info.slots, "context_length": info.context_length, "models": [m["id"] for m in info.models]}
        return Health(info.ready, info.detail + (f" ({info.version})" if info.version else ""), facts)

    async def models(self) -> list[ModelAd]:
        if self._inflight and self._last_models is not None:
            return self._last_models
        info = await self.info()
        if not info.ready:
            raise BackendError(info.detail, retryable=True, code="backend_unavailable")
        kind = "embedding" if info.embedding else "chat"
        features, modalities = self._abilities(info) if kind == "chat" else ((), ("text",))
        self._vllm_version = _version(info.version) if self.name == "vllm" else None
        ads: dict[str, ModelAd] = {}
        aliases: dict[str, str] = {}
        for item in info.models:
            engine_id = item["id"]
            meta = item.get("meta") or {}
            ctx = info.context_length or _as_int(item.get("max_model_len")) or _as_int(meta.get("n_ctx_train"))
            name = _public_name(engine_id)
            aliases[name] = engine_id
            ads[name] = ModelAd(name=name, kind=kind, context_length=ctx, features=features, modalities=modalities)
        if self.model:
            if self.model in ads:
                ads = {self.model: ads[self.model]}
            elif self.model in aliases.values():
                name = next(n for n, i in aliases.items() if i == self.model)
                ads = {name: ads[name]}
            elif len(ads) == 1:
                # One engine, one model: serve it under the operator's chosen name.
                (only,) = ads.values()
                aliases[self.model] = aliases[only.name]
                ads = {self.model: msgspec.structs.replace(only, name=self.model)}
            else:
                raise BackendError(f"{self.name} does not serve {self.model!r}; it serves {', '.join(sorted(ads))}", code="model_not_found")
        self._aliases = aliases
        self._last_models = list(ads.values())
        return self._last_models

    def _abilities(self, info: EngineInfo) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """What this engine honours for a chat model, from what it says about itself."""
        if self.name == "llamacpp":
            props = info.raw.get("props")
            if not props:
                # llama-cpp-python's server: grammars, penalties and bias, but logprobs only
                # for a model loaded with logits_all, and tools only with special handlers.
                return ("json_object", "json_schema", "penalties", "logit_bias"), ("text",)
            caps = props.get("chat_template_caps")
            tools = ("tools", "tool_choice") if not isinstance(caps, dict) or caps.get("supports_tools") else ()
            vision = (props.get("modalities") or {}).get("vision") is True
            return (*tools, "json_object", "json_schema", "logprobs", "penalties", "logit_bias"), ("text", "image") if vision else ("text",)
        if self.name == "sglang":
            vision = (info.raw.get("model_info") or {}).get("has_image_understanding") is True
            return FEATURES, ("text", "image") if vision else ("text",)
        # vLLM (its /v1/models does not say whether a model takes images: text only), and a
        # generic OpenAI-compatible server, which takes the OpenAI parameters by definition
        # (and refuses what it cannot do with its own 400).
        return FEATURES, ("text",)

    async def capacity(self) -> int | None:
        """The engine's own figure; None where it says none (vLLM, a generic server): the
        node then learns it (`node/capacity.py`)."""
        if self._capacity:
            return self._capacity
        if self._inflight and self._last_capacity is not None:
            return self._last_capacity or None
        try:
            info = await self.info()
        except BackendError:
            info = None
        self._last_capacity = info.slots if info is not None and info.slots else _DEFAULT_CAPACITY.get(self.name, 0)
        return self._last_capacity or None

    async def _engine_model(self, body: dict[str, Any]) -> str:
        model = body.get("model") or self.model or ""
        if model not in self._aliases:
            await self.models()
        return self._aliases.get(model, model)

    # -- generation -----------------------------------------------------------------------

    def chat(self, body: dict[str, Any]) -> AsyncIterator[Chunk]:
        return self._stream("/v1/chat/completions", body, chat=True)

    def complete(self, body: dict[str, Any]) -> AsyncIterator[Chunk]:
        return self._stream("/v1/completions", body, chat=False)

    async def _stream(self, path: str, body: dict[str, Any], *, chat: bool) -> AsyncIterator[Chunk]:
        self._inflight += 1
        inner = self._stream_once(path, body, chat=chat)
        try:
            async for chunk in inner:
                yield chunk
        finally:
            await inner.aclose()  # at once, not at garbage collection: this closes the connection
            self._inflight -= 1

    async def _stream_once(self, path: str, body: dict[str, Any], *, chat: bool) -> AsyncIterator[Chunk]:
        public = body.get("model") or self.model
        payload = self._wire({**body, "model": await self._engine_model(body), "stream": True, "stream_options": {"include_usage": True}})
        if self.name in ("vllm", "sglang"):
            # Usage on every chunk: a cancelled job is then metered exactly.
            payload["stream_options"]["continuous_usage_stats"] = True
        single = body.get("parallel_tool_calls") is False  # honoured here whatever the engine does
        usage: Usage | None = None
        finish: str | None = None
        pieces = 0
        generated: list[str] = []
        try:
            async with self._client.stream("POST", path, json=payload) as r:
                if r.status_code != 200:
                    raise status_error(self.name, r.status_code, await r.aread(), model=public)
                done = False
                async for line in lines(r):
                    if done:
                        continue  # read to the body's end, so the connection goes back to the pool
                    field_name, _, data = line.partition(b":")
                    data = data.strip()
                    if field_name == b"error":  # llama.cpp's own framing for a failure mid-stream
                        raise BackendError(f"{self.name} failed mid-stream: {error_text(data)}")
                    if field_name != b"data":
                        continue  # blank separators, comments (pings), event:/id: lines
                    if data == b"[DONE]":
                        done = True
                        continue
                    event = stream_event(self.name, data)
                    if "error" in event or event.get("object") == "error":
                        raise BackendError(f"{self.name} failed mid-stream: {error_text(data)}")
                    if isinstance(event.get("usage"), dict):
                        u = event["usage"]
                        usage = Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0))
                    for choice in event.get("choices") or []:
                        if not isinstance(choice, dict):
                            continue
                        delta = choice.get("delta") or {}
                        text = delta.get("content") if chat else choice.get("text")
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
                        calls = _call_deltas(delta.get("tool_calls"), single) if chat else None
                        logprobs = _logprob_entries(choice.get("logprobs"), chat)
                        if text or calls or logprobs:
                            pieces += 1
                            generated.append((text or "") + call_text(calls))
                            yield Chunk(text=text or "", usage=usage, tool_calls=calls, logprobs=logprobs)
        except httpx.HTTPError as exc:
            raise BackendError(f"{self.name} connection failed mid-stream ({type(exc).__name__}: {exc})", retryable=pieces == 0) from None
        if finish is None:
            raise BackendError(f"{self.name} ended the stream before finishing (truncated)")
        if finish in ("abort", "error"):
            raise BackendError(f"{self.name} aborted the request (finish_reason {finish!r})")
        if usage is None:
            usage = await self._usage_without_stream(path, payload, "".join(generated))
        yield Chunk(finish_reason=finish, usage=usage)

    def _wire(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The request in the engine's own dialect where it differs from OpenAI's: structured
        output goes in each engine's guided-decoding fields."""
        fmt = payload.pop("response_format", None)
        if not fmt or fmt.get("type") == "text":
            return payload
        schema = (fmt.get("json_schema") or {}).get("schema") if fmt["type"] == "json_schema" else None
        if fmt["type"] == "json_schema" and not schema:
            schema = {"type": "object"}
        if self.name == "vllm":
            # vLLM 0.10.2 moved guided decoding into `structured_outputs` (the old fields were
            # removed in 0.12); earlier releases take `guided_json` / response_format.
            if self._vllm_version is None or self._vllm_version >= (0, 10, 2):
                payload["structured_outputs"] = {"json": schema} if schema is not None else {"json_object": True}
            elif schema is not None:
                payload["guided_json"] = schema
            else:
                payload["response_format"] = fmt
        elif self.name == "llamacpp":
            # llama-server and llama-cpp-python's server both take a schema in a json_object format.
            payload["response_format"] = {"type": "json_object", **({"schema": schema} if schema is not None else {})}
        else:  # SGLang compiles OpenAI's response_format itself; so does any OpenAI server
            payload["response_format"] = fmt
        return payload

    async def _usage_without_stream(self, path: str, payload: dict[str, Any], text: str) -> Usage:
        """Usage for engines whose streams carry none (llama-cpp-python's server).

        Prompt tokens: the engine's own count, from the same request without streaming and
        with one output token (llama.cpp-family engines reuse the cached prompt, so this
        costs about one token). Completion tokens: the generated text counted by the engine's
        tokenizer, else its UTF-8 bytes (an upper bound the control plane meters down).
        """
        if not self._warned_usage:
            self._warned_usage = True
            log.warning("%s streams no usage; counting prompt tokens with a 1-token probe (upgrade the engine to avoid it)", self.name)
        probe = {k: v for k, v in payload.items() if k not in ("stream", "stream_options", "max_completion_tokens")}
        probe["max_tokens"] = 1
        try:
            r = await self._client.post(path, json=probe)
            u = r.json().get("usage") if r.status_code == 200 else None
            prompt = int(u["prompt_tokens"])
        except (httpx.HTTPError, ValueError, TypeError, KeyError, AttributeError):
            raise BackendError(f"{self.name} did not report token usage, and the usage probe failed") from None
        counted = await self.count_tokens(text)
        return Usage(prompt, counted if counted is not None else len(text.encode()))

    async def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = embedding_inputs(body)
        public = body.get("model") or self.model or ""
        # Always ask for floats; base64 is encoded here, the same for every engine.
        payload = {"model": await self._engine_model(body), "input": inputs, "encoding_format": "float"}
        if body.get("dimensions"):
            payload["dimensions"] = body["dimensions"]
        try:
            r = await self._client.post("/v1/embeddings", json=payload)
        except httpx.HTTPError as exc:
            raise unreachable(self.name, self.base_url, exc) from None
        if r.status_code != 200:
            raise status_error(self.name, r.status_code, r.content, model=public)
        try:
            data = r.json()
            rows = sorted(data["data"], key=lambda d: d.get("index", 0))
            vectors = [row["embedding"] for row in rows]
            tokens = int((data.get("usage") or {}).get("prompt_tokens") or 0)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BackendError(f"{self.name} returned an embeddings body that is not OpenAI-shaped") from None
        if len(vectors) != len(inputs) or not all(isinstance(v, list) for v in vectors):
            raise BackendError(f"{self.name} returned {len(vectors)} embeddings for {len(inputs)} inputs")
        return embedding_response(vectors, public, tokens, body.get("encoding_format", "float"))

    async def count_tokens(self, text: str) -> int | None:
        """The engine's own tokenizer: llama-server `POST /tokenize {"content"}`, else
        llama-cpp-python's `POST /extras/tokenize/count {"input"}`; vLLM `POST /tokenize`.
        SGLang and generic servers publish none we know of: None (the byte bound holds)."""
        if not text:
            return 0
        if self.name == "llamacpp":
            tries = [("/tokenize", {"content": text, "add_special": False}, "tokens"), ("/extras/tokenize/count", {"input": text}, "count")]
        elif self.name == "vllm":
            model = self.model if self.model in self._aliases.values() else next(iter(self._aliases.values()), self.model)
            tries = [("/tokenize", {"model": model, "prompt": text, "add_special_tokens": False}, "count")]
        else:
            return None
        for path, body, field_name in tries:
            try:
                r = await self._client.post(path, json=body, timeout=INFO_TIMEOUT)
            except httpx.HTTPError:
                return None
            if r.status_code in (404, 405):
                continue
            try:
                value = r.json()[field_name] if r.status_code == 200 else None
            except (ValueError, KeyError, TypeError):
                value = None
            if isinstance(value, list):
                return len(value)
            return value if isinstance(value, int) and not isinstance(value, bool) else None
        return None

    async def aclose(self) -> None:
        await self._client.aclose()


def _version(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    parts = []
    for piece in text.split("."):
        digits = "".join(itertools.takewhile(str.isdigit, piece))
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts) or None


def _call_deltas(raw: Any, single: bool) -> list[dict[str, Any]] | None:
    """An engine's streamed tool-call deltas, normalized (null fields dropped); with
    `single` (parallel_tool_calls false) only the first call."""
    if not isinstance(raw, list):
        return None
    out = []
    for d in raw:
        if not isinstance(d, dict):
            continue
        index = d.get("index") if isinstance(d.get("index"), int) else 0
        if single and index > 0:
            continue
        fn = d.get("function") or {}
        delta: dict[str, Any] = {"index": index, "function": {k: fn[k] for k in ("name", "arguments") if fn.get(k) is not None}}
        if d.get("id"):
            delta["id"] = d["id"]
            delta["type"] = "function"
        out.append(delta)
    return out or None


def _logprob_entries(raw: Any, chat: bool) -> list[dict[str, Any]] | None:
    """Chat-shaped logprob entries from a chunk's `logprobs` (chat: `content`; completions:
    the legacy parallel lists)."""
    if not isinstance(raw, dict):
        return None
    if chat:
        content = raw.get("content")
        return content if isinstance(content, list) and content else None
    tokens = raw.get("tokens") or []
    lps = raw.get("token_logprobs") or []
    tops = raw.get("top_logprobs") or []
    out = []
    for i, tok in enumerate(tokens):
        top = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        out.append({
            "token": tok, "logprob": lps[i] if i < len(lps) else None, "bytes": list(str(tok).encode()),
            "top_logprobs": [{"token": k, "logprob": v, "bytes": list(k.encode())} for k, v in top.items()],
        })
    return out or None


def _public_name(engine_id: str) -> str:
    """llama.cpp-family servers name a model by its file path; advertise the file's stem."""
    if engine_id.endswith(".gguf"):
        return PurePath(engine_id).name.removesuffix(".gguf")
    return engine_id
