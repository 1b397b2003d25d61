"""An Ollama-compatible API on the control plane, for tools that speak only Ollama.

`/api/tags`, `/api/show`, `/api/ps`, `/api/chat`, `/api/generate`, `/api/embed`: bearer-key
authenticated, and routed, held and billed like the OpenAI routes, because each request is
converted into the same normalized body (`schemas.ChatRequest` / `CompletionRequest` /
`EmbeddingRequest`, validated the same way) and submitted through the same `start_job`.
Answers use Ollama's field names, NDJSON streams (streaming is Ollama's default), durations
in nanoseconds, and errors as `{"error": "..."}`.

Not to be confused with `backends/ollama.py`, which is a node talking to a real Ollama.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from infernet.control import schemas
from infernet.control.api.deps import keyed, plane
from infernet.control.api.errors import status_of
from infernet.control.api.openai import (
    answered,
    failure,
    model_entries,
    served,
    start_job,
    wait_unless_disconnected,
)
from infernet.control.dispatch.jobs import JobStatus
from infernet.control.dispatch.live import LiveJob
from infernet.control.errors import InfernetError, InvalidRequest, ModelNotFound
from infernet.control.store import KeyRecord

_enc = msgspec.json.Encoder()
NDJSON = "application/x-ndjson"
EPOCH = "1970-01-01T00:00:00Z"


# -- requests ---------------------------------------------------------------------------


# Ollama's `options`: the sampling ones are honoured (validated as their OpenAI twins);
# load-time ones (num_ctx, num_gpu, ...) are the serving node's to choose and are ignored;
# these are refused by name, as the normalized request has nothing to carry them in.
_SAMPLING_OPTIONS = ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty", "stop")
_REFUSED_OPTIONS = ("top_k", "min_p", "typical_p", "repeat_penalty", "repeat_last_n", "mirostat", "mirostat_tau", "mirostat_eta", "tfs_z", "penalize_newline", "num_keep")


class OllamaCall(msgspec.Struct):
    function: dict[str, Any]


class OllamaMessage(msgspec.Struct, kw_only=True):
    role: str
    content: str = ""
    images: list[str] | None = None
    tool_calls: list[OllamaCall] | None = None
    tool_name: str | None = None
    thinking: str | None = None


class _Generation(msgspec.Struct, kw_only=True):
    model: Annotated[str, msgspec.Meta(min_length=1)]
    format: str | dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    stream: bool = True
    keep_alive: str | int | float | None = None  # accepted; the serving node's engine decides
    think: bool | str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class ChatBody(_Generation, kw_only=True):
    messages: list[OllamaMessage] = []
    tools: list[dict[str, Any]] | None = None


class GenerateBody(_Generation, kw_only=True):
    prompt: str = ""
    system: str | None = None
    raw: bool = False
    images: list[str] | None = None
    suffix: Any = None
    template: Any = None
    context: Any = None


class EmbedBody(msgspec.Struct, kw_only=True):
    model: Annotated[str, msgspec.Meta(min_length=1)]
    input: str | list[str]
    truncate: bool = True
    dimensions: int | None = None
    keep_alive: str | int | float | None = None
    options: dict[str, Any] | None = None


class ShowBody(msgspec.Struct, kw_only=True):
    model: str | None = None
    name: str | None = None  # older clients
    verbose: bool = False


def _decode(raw: bytes, kind: type) -> Any:
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Invalid request: {exc}") from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}", code="invalid_json") from None


# OpenAI parameter -> the Ollama field it came from, so a refusal names what the client sent.
_OLLAMA_NAME = {"max_tokens": "options.num_predict", "temperature": "options.temperature", "top_p": "options.top_p", "seed": "options.seed", "stop": "options.stop",
                "presence_penalty": "options.presence_penalty", "frequency_penalty": "options.frequency_penalty", "response_format": "format", "prompt": "prompt",
                "logprobs": "top_logprobs"}


def _normalized(kind: type[msgspec.Struct], data: dict[str, Any]) -> Any:
    """The OpenAI request an Ollama one amounts to, validated as the OpenAI routes validate."""
    raw = _enc.encode(data)
    try:
        return schemas.parse(raw, kind)
    except InvalidRequest as exc:
        name = _OLLAMA_NAME.get(exc.param or "", exc.param)
        msg = exc.message.replace(f"`$.{exc.param}`", f"`{name}`") if exc.param else exc.message
        raise InvalidRequest(msg, param=name, code=exc.code) from None


def _sampling(body: _Generation) -> dict[str, Any]:
    out: dict[str, Any] = {"model": body.model}
    o = body.options or {}
    for name in _REFUSED_OPTIONS:
        if o.get(name) is not None:
            raise InvalidRequest(f"`options.{name}` is not supported here.", param=f"options.{name}", code="unsupported_parameter")
    cap = o.get("num_predict")
    if cap is not None and not (isinstance(cap, int) and cap < 0):  # -1: no limit, -2: fill the context
        out["max_tokens"] = cap
    out.update((name, o[name]) for name in _SAMPLING_OPTIONS if o.get(name) is not None)
    if body.think:
        raise InvalidRequest("`think` is not supported here.", param="think", code="unsupported_parameter")
    if body.logprobs:
        out["logprobs"] = True
        if body.top_logprobs:
            out["top_logprobs"] = body.top_logprobs
    if isinstance(body.format, dict):
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": "format", "schema": body.format, "strict": True}}
    elif body.format == "json":
        out["response_format"] = {"type": "json_object"}
    elif body.format:
        raise InvalidRequest('`format` must be "json" or a JSON schema.', param="format")
    return out


def _images(images: list[str] | None) -> list[dict[str, Any]]:
    """Ollama's base64 images as OpenAI image parts (data URLs)."""
    parts = []
    for img in images or ():
        kind = "png" if img.startswith("iVBOR") else "jpeg"
        parts.append({"type": "image_url", "image_url": {"url": f"data:image/{kind};base64,{img}"}})
    return parts


def chat_request(body: ChatBody) -> schemas.ChatRequest:
    messages: list[dict[str, Any]] = []
    pending: list[str] = []  # ids of the assistant's calls not answered yet, in order
    n = 0
    for m in body.messages:
        msg: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.images:
            msg["content"] = [{"type": "text", "text": m.content}, *_images(m.images)]
        if m.tool_calls:
            calls = []
            for c in m.tool_calls:
                n += 1
                call_id = str(c.function.get("id") or f"call_{n}")
                args = c.function.get("arguments")
                calls.append({"id": call_id, "type": "function", "function": {"name": str(c.function.get("name") or ""), "arguments": args if isinstance(args, str) else _enc.encode(args or {}).decode()}})
            msg["tool_calls"] = calls
            pending = [c["id"] for c in calls]
        if m.role == "tool":
            # Ollama answers calls in order (naming the tool, not the call): pair them up.
            msg["tool_call_id"] = pending.pop(0) if pending else f"call_{m.tool_name or 'tool'}"
        messages.append(msg)
    data = {**_sampling(body), "messages": messages}
    if body.tools:
        data["tools"] = body.tools
    return _normalized(schemas.ChatRequest, data)


def generate_request(body: GenerateBody) -> tuple[str, Any]:
    """A raw generate continues the prompt (a completion); otherwise the prompt is a user
    turn under the model's chat template, as Ollama does."""
    for name in ("suffix", "template", "context"):
        if getattr(body, name) is not None:
            raise InvalidRequest(f"`{name}` is not supported here.", param=name, code="unsupported_parameter")
    if body.raw:
        if body.images:
            raise InvalidRequest("`images` need the chat template; a raw prompt cannot carry them.", param="images")
        data = {**_sampling(body), "prompt": body.prompt}
        if data.pop("logprobs", None):  # the completions API counts its alternatives in `logprobs`
            data["logprobs"] = data.pop("top_logprobs", 0)
        return "completion", _normalized(schemas.CompletionRequest, data)
    messages: list[dict[str, Any]] = [{"role": "system", "content": body.system}] if body.system else []
    content: Any = [{"type": "text", "text": body.prompt}, *_images(body.images)] if body.images else body.prompt
    messages.append({"role": "user", "content": content})
    return "chat", _normalized(schemas.ChatRequest, {**_sampling(body), "messages": messages})


# -- answers ----------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _line(data: dict[str, Any]) -> bytes:
    return _enc.encode(data) + b"\n"


def _counts(job: LiveJob) -> dict[str, Any]:
    """Ollama's final counts; durations in nanoseconds, from the control plane's clock (the
    node's engine load time is not known here: 0)."""
    usage = job.usage or {}
    now = time.monotonic()
    first = job.first_at or now
    sent = job.sent_at or first
    return {
        "total_duration": int((time.time() - job.created) * 1e9),
        "load_duration": 0,
        "prompt_eval_count": usage.get("prompt_tokens", 0),
        "prompt_eval_duration": int(max(0.0, first - sent) * 1e9),
        "eval_count": usage.get("completion_tokens", 0),
        "eval_duration": int(max(0.0, now - first) * 1e9),
    }


def _done_reason(job: LiveJob) -> str:
    return "length" if job.state.finish_reason == "length" else "stop"


def _ollama_calls(job: LiveJob) -> list[dict[str, Any]]:
    out = []
    for i, c in enumerate(job.calls):
        try:
            args = msgspec.json.decode(c["function"]["arguments"] or "{}")
        except msgspec.DecodeError:
            args = c["function"]["arguments"]
        out.append({"id": c["id"], "function": {"index": i, "name": c["function"]["name"], "arguments": args}})
    return out


class _Answer:
    """One chat or generate answer in Ollama's shape."""

    def __init__(self, job: LiveJob, chat: bool) -> None:
        self.job = job
        self.chat = chat
        self.model = job.model

    def piece(self, text: str, logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "created_at": _now()}
        if self.chat:
            out["message"] = {"role": "assistant", "content": text}
        else:
            out["response"] = text
        out["done"] = False
        if logprobs:
            out["logprobs"] = logprobs
        return out

    def calls(self) -> dict[str, Any] | None:
        if not self.job.calls:
            return None
        out = self.piece("")
        if self.chat:
            out["message"]["tool_calls"] = _ollama_calls(self.job)
        return out

    def final(self, text: str, *, whole: bool = False) -> dict[str, Any]:
        """The last line; `whole`: the unstreamed answer, with every call and logprob."""
        out = self.piece(text, self.job.logprobs if whole else None)
        if whole and self.chat and self.job.calls:
            out["message"]["tool_calls"] = _ollama_calls(self.job)
        out.update(done=True, done_reason=_done_reason(self.job), **_counts(self.job))
        return out


async def _generation(request: Request, key: KeyRecord, kind: str, req: Any, stream: bool, chat: bool) -> Response:
    job, _ = await start_job(request, key, kind, req, schemas.client_body(req), origin="ollama")
    assert job is not None
    await wait_unless_disconnected(request, job, job.started if stream else job.placed)
    if job.finished.is_set() and job.status is not JobStatus.COMPLETED and not job.delivered:
        raise failure(job)
    answer = _Answer(job, chat)
    if stream:
        request.state.engine_s = job.engine_first_s
        return StreamingResponse(_stream(job, answer, request), media_type=NDJSON)
    await wait_unless_disconnected(request, job, job.finished)
    if job.status is not JobStatus.COMPLETED:
        raise failure(job)
    answered(request, job)
    text = (job.content or "") if chat else job.output
    return _json(answer.final(text, whole=True))


async def _stream(job: LiveJob, answer: _Answer, request: Request) -> AsyncIterator[bytes]:
    try:
        async for _, typ, data in job.follow():
            if typ == "token":
                if data["text"] or data.get("logprobs"):
                    yield _line(answer.piece(data["text"], data.get("logprobs")))
            elif typ == "done":
                calls = answer.calls()
                if calls is not None:
                    yield _line(calls)
                yield _line(answer.final(""))
            else:
                yield _line({"error": data.get("message") or "the job failed"})
        if job.status is JobStatus.COMPLETED:
            answered(request, job, streamed=True)
    finally:
        if not job.finished.is_set():
            job.request_cancel()


def _json(data: Any, status: int = 200) -> Response:
    return Response(_enc.encode(data), status_code=status, media_type="application/json")


def _loaded(model: str, chat: bool, reason: str) -> Response:
    """Ollama's answer to a request with nothing to generate: the model is 'loaded'."""
    out: dict[str, Any] = {"model": model, "created_at": _now()}
    if chat:
        out["message"] = {"role": "assistant", "content": ""}
    else:
        out["response"] = ""
    out.update(done=True, done_reason=reason)
    return _json(out)


async def chat(request: Request, key: KeyRecord) -> Response:
    body = _decode(await request.body(), ChatBody)
    if not body.messages:
        plane(request).placement.kind_of(body.model)  # 404 for a model nobody serves
        return _loaded(body.model, True, "unload" if body.keep_alive == 0 else "load")
    return await _generation(request, key, "chat", chat_request(body), body.stream, chat=True)


async def generate(request: Request, key: KeyRecord) -> Response:
    body = _decode(await request.body(), GenerateBody)
    if not body.prompt and not body.images:
        plane(request).placement.kind_of(body.model)
        return _loaded(body.model, False, "unload" if body.keep_alive == 0 else "load")
    kind, req = generate_request(body)
    return await _generation(request, key, kind, req, body.stream, chat=False)


async def embed(request: Request, key: KeyRecord) -> Response:
    body = _decode(await request.body(), EmbedBody)
    req = _normalized(schemas.EmbeddingRequest, {"model": body.model, "input": body.input, **({"dimensions": body.dimensions} if body.dimensions else {})})
    started = time.time()
    job, _ = await start_job(request, key, "embedding", req, schemas.to_body(req), origin="ollama")
    assert job is not None
    await wait_unless_disconnected(request, job, job.finished)
    if job.status is not JobStatus.COMPLETED or job.state.result is None:
        raise failure(job)
    answered(request, job)
    result = job.state.result
    vectors = [row["embedding"] for row in sorted(result.get("data") or [], key=lambda r: r.get("index", 0))]
    return _json({
        "model": body.model, "embeddings": vectors, "total_duration": int((time.time() - started) * 1e9), "load_duration": 0,
        "prompt_eval_count": (result.get("usage") or {}).get("prompt_tokens", 0),
    })


# -- models -----------------------------------------------------------------------------


def _details(kind: str) -> dict[str, Any]:
    # The network serves a model by name across nodes; file-level facts are not known here.
    return {"parent_model": "", "format": "gguf", "family": "", "families": [], "parameter_size": "", "quantization_level": ""}


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _stamp(created: int) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z") if created else EPOCH


async def tags(request: Request, key: KeyRecord) -> Response:
    models = [
        {"name": m["id"], "model": m["id"], "modified_at": _stamp(m["created"]), "size": 0, "digest": _digest(m["id"]), "details": _details(m["kind"])}
        for m in await model_entries(plane(request))
    ]
    return _json({"models": models})


async def ps(request: Request, key: KeyRecord) -> Response:
    # Every served model is loaded on some node; expiry is the nodes' business.
    models = [
        {"name": m["id"], "model": m["id"], "size": 0, "digest": _digest(m["id"]), "details": _details(m["kind"]), "expires_at": "2318-01-01T00:00:00Z", "size_vram": 0, "context_length": m["max_model_len"] or 0}
        for m in await model_entries(plane(request))
    ]
    return _json({"models": models})


_CAPABILITY = {"tools": "tools", "image": "vision"}


async def show(request: Request, key: KeyRecord) -> Response:
    body = _decode(await request.body(), ShowBody)
    name = body.model or body.name or ""
    entry = next((m for m in await model_entries(plane(request)) if m["id"] == name), None)
    if entry is None:
        raise ModelNotFound(name)
    view = served(plane(request), name)
    if view.kind == "embedding":
        caps = ["embedding"]
    else:
        caps = ["completion", *(c for f, c in _CAPABILITY.items() if f in view.features or f in view.modalities)]
    info: dict[str, Any] = {"general.architecture": "infernet", "general.basename": name}
    if view.context_length:
        info["infernet.context_length"] = view.context_length
    return _json({
        "license": "", "modelfile": f"# served by the infernet network\nFROM {name}\n", "parameters": "", "template": "{{ .Prompt }}",
        "details": _details(view.kind), "model_info": info, "capabilities": caps, "modified_at": _stamp(entry["created"]),
    })


# -- errors, in Ollama's shape ----------------------------------------------------------


def ollama_route(fn: Callable[[Request, KeyRecord], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """A keyed route whose errors are Ollama's `{"error": "..."}` with the usual status."""
    inner = keyed(fn)

    async def handler(request: Request) -> Response:
        try:
            return await inner(request)
        except InfernetError as exc:
            status = status_of(exc)
            headers = {"Retry-After": str(exc.retry_after or 1)} if status == 429 else None
            return Response(_enc.encode({"error": exc.message}), status, headers, media_type="application/json")

    return handler


routes = [
    Route("/api/tags", ollama_route(tags)),
    Route("/api/ps", ollama_route(ps)),
    Route("/api/show", ollama_route(show), methods=["POST"]),
    Route("/api/chat", ollama_route(chat), methods=["POST"]),
    Route("/api/generate", ollama_route(generate), methods=["POST"]),
    Route("/api/embed", ollama_route(embed), methods=["POST"]),
]
