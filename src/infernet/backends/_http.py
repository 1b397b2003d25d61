"""What every HTTP engine adapter shares: error bodies, status mapping, embedding shapes."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import msgspec

from infernet.backends.base import BackendError

# Read timeout is per chunk: a long generation is fine, a silent engine is not.
TIMEOUT = httpx.Timeout(connect=5.0, read=300.0, write=30.0, pool=30.0)
# One engine takes many requests at once: keep a connection per request alive, or every
# request past httpx's default of 20 kept-alive connections pays a new TCP connection.
LIMITS = httpx.Limits(max_connections=1024, max_keepalive_connections=1024, keepalive_expiry=60)
INFO_TIMEOUT = 5.0


def error_text(raw: bytes | str) -> str:
    """The human message inside an engine's error body, whatever its dialect.

    Ollama: `{"error": "..."}`; OpenAI, llama.cpp, new vLLM: `{"error": {"message": ...}}`;
    SGLang and old vLLM: `{"object": "error", "message": ...}`; FastAPI: `{"detail": ...}`.
    """
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:300] or "(empty body)"
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, str):
            return err[:300]
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail")
            if msg:
                return str(msg)[:300]
        if "detail" in data:
            return str(data["detail"])[:300]
    return text.strip()[:300]


def status_error(engine: str, status: int, body: bytes | str, *, model: str | None = None) -> BackendError:
    """A BackendError for an engine's HTTP error, coded so the control plane maps it right."""
    msg = error_text(body)
    low = msg.lower()
    if status == 404 or ("not found" in low and model and model.lower() in low):
        return BackendError(f"{engine}: model {model!r} is not available ({msg})", retryable=True, code="model_not_found")
    if "context length" in low or "context window" in low or "maximum context" in low or "too long" in low:
        return BackendError(f"{engine}: {msg}", code="context_length_exceeded")
    if status in (400, 422):
        return BackendError(f"{engine} rejected the request: {msg}", code="invalid_request")
    if status in (429, 503):
        return BackendError(f"{engine} is busy or loading (HTTP {status}): {msg}", retryable=True, code="over_capacity")
    return BackendError(f"{engine} answered HTTP {status}: {msg}", retryable=status >= 500)


async def lines(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body's lines, without their line ends, as the engine sends them. Every token the
    relay serves passes here: bytes split as they come, not httpx's text-decoding layers."""
    rest = b""
    async for chunk in response.aiter_bytes():
        if rest:
            chunk = rest + chunk
        *whole, rest = chunk.split(b"\n")
        for line in whole:
            yield line[:-1] if line.endswith(b"\r") else line
    if rest:
        yield rest


_decode = msgspec.json.Decoder()


def stream_event(engine: str, raw: bytes | str) -> dict[str, Any]:
    """One JSON object from an engine's stream (an NDJSON line or an SSE `data:` payload)."""
    try:
        event = _decode.decode(raw)
    except ValueError:  # msgspec refuses NaN, Infinity and numbers past a double; Python's json reads them
        try:
            event = json.loads(raw)
        except ValueError:
            raise BackendError(f"{engine} sent invalid JSON in its stream: {raw[:80]!r}") from None
    if not isinstance(event, dict):
        raise BackendError(f"{engine} sent an unexpected stream event: {raw[:80]!r}")
    return event


def unreachable(engine: str, url: str, exc: Exception) -> BackendError:
    return BackendError(f"{engine} at {url} is unreachable ({type(exc).__name__}: {exc})", retryable=True, code="backend_unavailable")


def embedding_response(vectors: Sequence[Sequence[float]], model: str, prompt_tokens: int, encoding_format: str = "float") -> dict[str, Any]:
    """The OpenAI embeddings body. base64 is little-endian float32, as OpenAI sends it."""
    data = []
    for i, vec in enumerate(vectors):
        if encoding_format == "base64":
            emb: Any = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode("ascii")
        else:
            emb = [float(x) for x in vec]
        data.append({"object": "embedding", "index": i, "embedding": emb})
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}


def embedding_inputs(body: dict[str, Any]) -> list[str]:
    raw = body.get("input")
    inputs = raw if isinstance(raw, list) else [raw]
    if not inputs or not all(isinstance(t, str) for t in inputs):
        raise BackendError("`input` must be a string or a list of strings", code="invalid_request")
    if any(t == "" for t in inputs):
        raise BackendError("`input` must not contain empty strings", code="invalid_request")
    return inputs


def text_of(content: Any) -> str:
    """Message content as text: a string, or the text parts of a content-part list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
