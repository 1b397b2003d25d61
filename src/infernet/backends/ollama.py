"""Ollama through its native API (default port 11434).

Native, not Ollama's OpenAI shim, because only the native API has what a node needs: real
token counts (`prompt_eval_count`, `eval_count`), the model's trained context (`/api/show`),
what is loaded (`/api/ps`), and model management (`/api/pull`, `/api/delete`).

Context: Ollama silently truncates prompts longer than its `num_ctx` (2048 or 4096 by
default, depending on the version). So the adapter always sends an explicit `num_ctx`
(configured, else min(trained context, 8192)) and advertises exactly that number; the
control plane can then refuse prompts that do not fit instead of the engine mangling them.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx

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
    text_of,
    unreachable,
)
from infernet.backends.base import BackendError, Chunk, Health
from infernet.protocol.messages import FEATURES, ModelAd, Usage

log = logging.getLogger("infernet.backends.ollama")

DEFAULT_NUM_CTX = 8192
_ROLES = {"developer": "system"}


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("-")[0].split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def _abilities(capabilities: Any, version: tuple[int, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What Ollama honours for a chat model: `format` (a JSON schema since 0.5.0) and the
    penalty options always; tools when the model's template has them (Ollama cannot force a
    call: no `tool_choice`); logprobs from 0.12.11; images for a vision model."""
    caps = capabilities if isinstance(capabilities, list) else []
    features = ["json_object", "penalties"]
    if version >= (0, 5, 0):
        features.append("json_schema")
    if "tools" in caps:
        features.append("tools")
    if version >= (0, 12, 11):
        features.append("logprobs")
    return tuple(f for f in FEATURES if f in features), ("text", "image") if "vision" in caps else ("text",)


def _messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI messages in Ollama's shape: images as base64 beside the text, earlier calls
    with their arguments as objects, tool results naming the tool they answer."""
    names = {c["id"]: c["function"]["name"] for m in messages for c in m.get("tool_calls") or ()}
    out = []
    for m in messages:
        msg: dict[str, Any] = {"role": _ROLES.get(m["role"], m["role"]), "content": text_of(m.get("content"))}
        parts = m["content"] if isinstance(m.get("content"), list) else ()
        images = [_image_data(p["image_url"]["url"]) for p in parts if p.get("type") == "image_url"]
        if images:
            msg["images"] = images
        if m.get("tool_calls"):
            msg["tool_calls"] = [{"function": {"name": c["function"]["name"], "arguments": _arguments(c["function"]["arguments"])}} for c in m["tool_calls"]]
        if m.get("tool_call_id") in names:
            msg["tool_name"] = names[m["tool_call_id"]]
        out.append(msg)
    return out


def _image_data(url: str) -> str:
    """Ollama takes images as base64; a node does not fetch URLs on a client's behalf."""
    head, sep, data = url.partition(",")
    if not (url.startswith("data:") and sep and head.endswith(";base64")):
        raise BackendError("ollama takes images as data: URLs (base64); this node does not fetch image URLs", code="invalid_request")
    return data


def _arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise BackendError("an earlier tool call's arguments are not JSON; Ollama needs them as an object", code="invalid_request") from None


def _logprobs(raw: Any) -> list[dict[str, Any]] | None:
    if not isinstance(raw, list) or not raw:
        return None
    out = []
    for e in raw:
        if isinstance(e, dict):
            tok = str(e.get("token", ""))
            out.append({
                "token": tok, "logprob": e.get("logprob"), "bytes": e.get("bytes") or list(tok.encode()),
                "top_logprobs": [{"token": str(t.get("token", "")), "logprob": t.get("logprob"), "bytes": t.get("bytes") or list(str(t.get("token", "")).encode())} for t in e.get("top_logprobs") or () if isinstance(t, dict)],
            })
    return out or None


def _same_model(a: str, b: str) -> bool:
    """`llama3.2` and `llama3.2:latest` name the same model."""
    def norm(n: str) -> str:
        return n if ":" in n.rsplit("/", 1)[-1] else n + ":latest"

    return norm(a) == norm(b)


class OllamaBackend:
    name = "ollama"

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:11434",
        *,
        model: str | None = None,
        keep_alive: str | int | None = None,
        num_ctx: int | None = None,
        parallel: int | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.keep_alive = keep_alive if keep_alive is not None else os.environ.get("INFERNET_OLLAMA_KEEP_ALIVE") or None
        self.num_ctx = num_ctx
        self.parallel = parallel
        self._client = client or httpx.AsyncClient(base_url=self.base_url, timeout=TIMEOUT, limits=LIMITS)
        self._show_cache: dict[str, dict[str, Any]] = {}  # digest -> /api/show facts
        self._trained: dict[str, int | None] = {}  # installed model -> trained context

    # -- low level ------------------------------------------------------------------------

    async def _request(self, method: str, path: str, *, json_body: Any = None, model: str | None = None, timeout: float | None = INFO_TIMEOUT) -> Any:
        try:
            r = await self._client.request(method, path, json=json_body, timeout=timeout)
        except httpx.HTTPError as exc:
            raise unreachable("ollama", self.base_url, exc) from None
        if r.status_code != 200:
            raise status_error("ollama", r.status_code, r.content, model=model)
        if not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            raise BackendError(f"ollama {path} returned invalid JSON: {r.text[:80]!r}", retryable=True) from None

    async def _ndjson(self, path: str, payload: dict[str, Any], *, model: str | None) -> AsyncIterator[dict[str, Any]]:
        """The lines of one streamed NDJSON response. Closing it closes the connection,
        which is how Ollama learns to stop generating (or pulling)."""
        try:
            async with self._client.stream("POST", path, json=payload) as r:
                if r.status_code != 200:
                    raise status_error("ollama", r.status_code, await r.aread(), model=model)
                async for line in lines(r):
                    if not line.strip():
                        continue
                    event = stream_event("ollama", line)
                    if "error" in event:
                        raise BackendError(f"ollama: {error_text(json.dumps(event))}", code="backend_error")
                    yield event
        except httpx.HTTPError as exc:
            raise BackendError(f"ollama connection failed mid-request ({type(exc).__name__}: {exc})", retryable=True) from None

    # -- facts ----------------------------------------------------------------------------

    async def version(self) -> str:
        data = await self._request("GET", "/api/version")
        return str((data or {}).get("version", "unknown"))

    async def installed(self) -> list[dict[str, Any]]:
        """`/api/tags`: every model on disk, with size and details."""
        data = await self._request("GET", "/api/tags")
        items = (data or {}).get("models")
        if not isinstance(items, list):
            raise BackendError("ollama /api/tags returned no model list", retryable=True)
        return [m for m in items if isinstance(m, dict) and isinstance(m.get("name") or m.get("model"), str)]

    async def loaded(self) -> list[dict[str, Any]]:
        """`/api/ps`: models in memory now, with `size_vram` and `expires_at`."""
        data = await self._request("GET", "/api/ps")
        items = (data or {}).get("models")
        return [m for m in items if isinstance(m, dict)] if isinstance(items, list) else []

    async def show(self, name: str) -> dict[str, Any]:
        """`/api/show`, plus `context_length` (trained) and `kind` worked out from it."""
        data = await self._request("POST", "/api/show", json_body={"model": name, "name": name}, model=name)
        if not isinstance(data, dict):
            raise BackendError(f"ollama /api/show {name} returned nothing", retryable=True)
        info = data.get("model_info") or {}
        arch = info.get("general.architecture")
        ctx = info.get(f"{arch}.context_length") if arch else None
        if not isinstance(ctx, int):
            ctx = next((v for k, v in info.items() if k.endswith(".context_length") and isinstance(v, int)), None)
        caps = data.get("capabilities")
        family = (data.get("details") or {}).get("family", "")
        if isinstance(caps, list):
            kind = "embedding" if "embedding" in caps and "completion" not in caps else "chat"
        else:  # Ollama before capabilities existed: BERT-family models are embedders
            kind = "embedding" if family in ("bert", "nomic-bert") else "chat"
        return {**data, "context_length": ctx, "kind": kind}

    async def _facts(self, tag: dict[str, Any]) -> dict[str, Any]:
        name = tag.get("name") or tag["model"]
        key = tag.get("digest") or name
        if key not in self._show_cache:
            self._show_cache[key] = await self.show(name)
        return self._show_cache[key]

    def _ctx_for(self, trained: int | None) -> int:
        want = self.num_ctx or DEFAULT_NUM_CTX
        return min(want, trained) if trained else want

    # -- Backend --------------------------------------------------------------------------

    async def health(self) -> Health:
        try:
            version = await self.version()
            names = [m.get("name") or m.get("model") for m in await self.installed()]
        except BackendError as exc:
            return Health(False, exc.message)
        if self.model and not any(_same_model(self.model, n) for n in names):
            return Health(False, f"ollama {version} has no model {self.model!r}; run `infernet model pull {self.model}`", {"version": version})
        if not names:
            return Health(False, f"ollama {version} has no models yet; run `infernet model pull <name>`", {"version": version})
        return Health(True, f"ollama {version} at {self.base_url}", {"version": version, "models": len(names)})

    async def _refresh(self) -> list[tuple[str, dict[str, Any]]]:
        found = []
        for tag in await self.installed():
            found.append((tag.get("name") or tag["model"], await self._facts(tag)))
        self._trained = {name: facts["context_length"] for name, facts in found}
        return found

    async def models(self) -> list[ModelAd]:
        out = []
        version = _version(await self.version())
        for name, facts in await self._refresh():
            if self.model and not _same_model(self.model, name):
                continue
            if facts["kind"] == "embedding":
                out.append(ModelAd(name=name, kind="embedding", context_length=facts["context_length"]))
                continue
            features, modalities = _abilities(facts.get("capabilities"), version)
            out.append(ModelAd(name=name, kind="chat", context_length=self._ctx_for(facts["context_length"]), features=features, modalities=modalities))
        return out

    async def capacity(self) -> int:
        """Ollama runs OLLAMA_NUM_PARALLEL requests per model at once and does not say how
        many over its API; the operator's setting (here or in the node's environment) wins,
        else 1, which is never more than Ollama runs."""
        if self.parallel:
            return max(1, self.parallel)
        try:
            return max(1, int(os.environ.get("OLLAMA_NUM_PARALLEL", "")))
        except ValueError:
            return 1

    async def _options(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The Ollama model name and `options` for an OpenAI-shaped body."""
        model = body.get("model") or self.model
        if not model:
            raise BackendError("the request names no model", code="invalid_request")
        opts: dict[str, Any] = {}
        for key in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
            if body.get(key) is not None:
                opts[key] = body[key]
        stop = body.get("stop")
        if stop:
            opts["stop"] = [stop] if isinstance(stop, str) else list(stop)
        limit = body.get("max_tokens")
        if limit:
            opts["num_predict"] = int(limit)
        # Known from the last heartbeat's model list; a model that vanished since then is
        # caught by Ollama's own 404.
        known = next((n for n in self._trained if _same_model(model, n)), None)
        if known is None:
            await self._refresh()
            known = next((n for n in self._trained if _same_model(model, n)), None)
            if known is None:
                raise BackendError(f"ollama: model {model!r} is not installed (it may have been removed)", retryable=True, code="model_not_found")
        opts["num_ctx"] = self._ctx_for(self._trained[known])
        return model, opts

    def _common(self, model: str, opts: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": model, "stream": True, "options": opts}
        if self.keep_alive is not None:
            payload["keep_alive"] = self.keep_alive
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_object":
            payload["format"] = "json"
        elif fmt.get("type") == "json_schema":  # Ollama 0.5+: the schema itself
            payload["format"] = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
        logprobs = body.get("logprobs")
        if logprobs not in (None, False):  # Ollama 0.12.11+
            payload["logprobs"] = True
            top = body.get("top_logprobs") if logprobs is True else logprobs
            if top:
                payload["top_logprobs"] = int(top)
        return payload

    async def chat(self, body: dict[str, Any]) -> AsyncIterator[Chunk]:
        model, opts = await self._options(body)
        payload = {**self._common(model, opts, body), "messages": _messages(body["messages"])}
        if body.get("tools") and body.get("tool_choice") != "none":
            payload["tools"] = body["tools"]
        async for chunk in self._generate("/api/chat", payload, model, lambda e: (e.get("message") or {}).get("content"), single=body.get("parallel_tool_calls") is False):
            yield chunk

    async def complete(self, body: dict[str, Any]) -> AsyncIterator[Chunk]:
        model, opts = await self._options(body)
        prompt = body.get("prompt", "")
        if isinstance(prompt, list):
            prompt = "".join(map(str, prompt))
        # raw: a completion continues the text as given, without the chat template.
        payload = {**self._common(model, opts, body), "prompt": prompt, "raw": True}
        async for chunk in self._generate("/api/generate", payload, model, lambda e: e.get("response")):
            yield chunk

    async def _generate(self, path: str, payload: dict[str, Any], model: str, text_of_event: Any, *, single: bool = False) -> AsyncIterator[Chunk]:
        calls = 0  # Ollama sends each tool call whole, in one message
        async for event in self._ndjson(path, payload, model=model):
            text = text_of_event(event)
            deltas = []
            for c in (event.get("message") or {}).get("tool_calls") or ():
                if single and calls:
                    break
                fn = c.get("function") or {}
                args = fn.get("arguments")
                deltas.append({
                    "index": calls, "id": c.get("id") or "call_" + secrets.token_hex(12), "type": "function",
                    "function": {"name": fn.get("name") or "", "arguments": args if isinstance(args, str) else json.dumps(args or {})},
                })
                calls += 1
            logprobs = _logprobs(event.get("logprobs"))
            if text or deltas or logprobs:
                yield Chunk(text=text or "", tool_calls=deltas or None, logprobs=logprobs)
            if event.get("done"):
                if "prompt_eval_count" not in event:
                    # Old Ollama versions omit it when the whole prompt came from cache.
                    log.warning("ollama reported no prompt_eval_count; prompt tokens counted as 0")
                usage = Usage(int(event.get("prompt_eval_count") or 0), int(event.get("eval_count") or 0))
                finish = "length" if event.get("done_reason") == "length" else "tool_calls" if calls else "stop"
                yield Chunk(finish_reason=finish, usage=usage)
                return
        raise BackendError("ollama ended the stream before `done` (truncated)")

    async def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        model = body.get("model") or self.model or ""
        inputs = embedding_inputs(body)
        payload: dict[str, Any] = {"model": model, "input": inputs, "truncate": True}
        if body.get("dimensions"):
            payload["dimensions"] = body["dimensions"]
        if self.keep_alive is not None:
            payload["keep_alive"] = self.keep_alive
        data = await self._request("POST", "/api/embed", json_body=payload, model=model, timeout=TIMEOUT.read)
        vectors = (data or {}).get("embeddings")
        if not isinstance(vectors, list) or len(vectors) != len(inputs):
            raise BackendError(f"ollama returned {len(vectors) if isinstance(vectors, list) else 'no'} embeddings for {len(inputs)} inputs")
        return embedding_response(vectors, model, int(data.get("prompt_eval_count") or 0), body.get("encoding_format", "float"))

    # -- management -----------------------------------------------------------------------

    async def pull(self, name: str) -> AsyncIterator[dict[str, Any]]:
        """`/api/pull` progress lines (`status`, and `digest`/`total`/`completed` while a
        layer downloads). Closing the iterator aborts the pull; Ollama keeps the partial
        blobs and resumes them next time."""
        async for event in self._ndjson("/api/pull", {"model": name, "name": name, "stream": True}, model=name):
            yield event
            if event.get("status") == "success":
                self._show_cache.clear()
                return
        raise BackendError(f"ollama ended the pull of {name} without success")

    async def delete(self, name: str) -> None:
        await self._request("DELETE", "/api/delete", json_body={"model": name, "name": name}, model=name)
        self._show_cache.clear()

    async def count_tokens(self, text: str) -> int | None:
        return None  # this engine has no tokenize endpoint we use yet: the byte bound holds

    async def aclose(self) -> None:
        await self._client.aclose()
