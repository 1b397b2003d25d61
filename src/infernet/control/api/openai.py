"""The OpenAI-compatible routes: models, chat and text completions (streamed or not), embeddings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from infernet.control import schemas
from infernet.control.api.deps import json, keyed, plane
from infernet.control.api.headers import note_job, overhead_s
from infernet.control.api.openai_format import (
    ChunkWriter,
    chat_response,
    completion_response,
    sse,
)
from infernet.control.dispatch.jobs import JobStatus
from infernet.control.dispatch.live import LiveJob
from infernet.control.errors import (
    ClientClosed,
    InvalidRequest,
    JobFailed,
    ModelNotFound,
)
from infernet.control.money import metering
from infernet.control.store import KeyRecord
from infernet.protocol.messages import FEATURES, MODALITIES


@dataclass(frozen=True, slots=True)
class ModelView:
    kind: str
    context_length: int | None
    features: frozenset[str]
    modalities: frozenset[str]
    nodes: int

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def served(cp: Any, model: str) -> ModelView:
    """What the online nodes serving `model` advertise for it, together."""
    ads = [m for o in cp.placement.offers(model) for m in o.info.models if m.name == model]
    contexts = [m.context_length for m in ads if m.context_length]
    return ModelView(
        kind=ads[0].kind if ads else "chat",
        context_length=max(contexts) if contexts else None,
        features=frozenset(f for m in ads for f in m.features),
        modalities=frozenset(x for m in ads for x in m.modalities),
        nodes=len({o.info.node_id for o in cp.placement.offers(model)}),
    )


async def model_entries(cp: Any) -> list[dict[str, Any]]:
    """Every model an online node serves, OpenAI-shaped with vLLM's `max_model_len`, plus
    what it accepts. `created`: when the longest-serving of its nodes first joined."""
    await cp.sessions.registry.flush()
    joined = {r["id"]: r["first_seen"] for r in await cp.store.nodes.list()}
    out = []
    for name in sorted(cp.placement.models()):
        view = served(cp, name)
        created = min((joined.get(o.info.node_id, 0.0) for o in cp.placement.offers(name)), default=0.0)
        out.append({
            "id": name, "object": "model", "created": int(created), "owned_by": "infernet", "root": name, "parent": None,
            "max_model_len": view.context_length, "kind": view.kind,
            "input_modalities": sorted(view.modalities, key=MODALITIES.index) if view.kind == "chat" else ["text"],
            "endpoints": ["embeddings"] if view.kind == "embedding" else ["chat.completions", "completions"],
            "features": [f for f in FEATURES if f in view.features] if view.kind == "chat" else [],
            "nodes": view.nodes,
        })
    return out


async def list_models(request: Request, key: KeyRecord) -> Response:
    return json({"object": "list", "data": await model_entries(plane(request))})


async def retrieve_model(request: Request, key: KeyRecord) -> Response:
    model = request.path_params["model"]
    entry = next((m for m in await model_entries(plane(request)) if m["id"] == model), None)
    if entry is None:
        raise ModelNotFound(model)
    return json(entry)


def check_needs(cp: Any, model: str, needs: dict[str, str]) -> None:
    """Refuse, naming the parameter, what no online node serving the model honours: a 400,
    never an answer that silently ignored it."""
    if not needs:
        return
    view = served(cp, model)
    for need, param in needs.items():
        if need in MODALITIES or need in ("audio", "file"):
            if need not in view.modalities:
                raise InvalidRequest(f"`{model}` does not accept {need} input (it takes {', '.join(sorted(view.modalities))}); `{param}` holds some.", param=param, code="unsupported_content")
        elif need not in view.features:
            what = {"json_object": "`response_format` json_object", "json_schema": "`response_format` json_schema", "penalties": f"`{param}`"}.get(need, f"`{param}`")
            raise InvalidRequest(f"{what} is not supported by `{model}` on any online node serving it.", param=param, code="unsupported_parameter")


async def start_job(request: Request, key: KeyRecord, kind: str, req: Any, body: dict[str, Any], idem: str | None = None, *, origin: str = "openai") -> tuple[LiveJob | None, dict | None]:
    """Check the request against the fleet and submit: (live job, None), or (live or None,
    existing row) for a reused idempotency key."""
    cp = plane(request)
    model = req.model
    served_kind = cp.placement.kind_of(model)
    if (kind == "embedding") != (served_kind == "embedding"):
        what = "n embedding" if served_kind == "embedding" else " chat"
        raise InvalidRequest(f"`{model}` is a{what} model; use the matching endpoint.", param="model", code="model_not_supported")
    needs = schemas.needs(kind, body)
    check_needs(cp, model, needs)
    route = schemas.route_of(req, needs)
    await check_context(cp, kind, req, body)
    try:
        job, row = await cp.driver.submit(key.id, kind, model, body, idem, route, origin=origin)
    finally:
        note_job(request, None, cp.billing.rates.get(key.id) if cp.billing is not None else None)
    note_job(request, job.id if job is not None else (row or {}).get("id"), None)
    return job, row


async def check_context(cp: Any, kind: str, req: Any, body: dict[str, Any]) -> None:
    """Refuse, before anything is held or run, an output cap or a prompt that cannot fit the
    model's context (the longest any online node serving it advertises)."""
    context = cp.placement.context_of(req.model)
    if context is None or kind == "embedding":
        return
    cap = body.get("max_tokens")
    if cap is not None and cap > context:
        param = "max_completion_tokens" if getattr(req, "max_completion_tokens", None) is not None else "max_tokens"
        raise InvalidRequest(f"`{param}` is {cap}, more than the {context}-token context of `{req.model}`.", param=param)
    floor = metering.prompt_floor(kind, body, await cp.billing.tokenizers.ready(req.model))
    if floor >= context:
        param = "messages" if kind == "chat" else "prompt"
        raise InvalidRequest(f"The prompt is at least {floor} tokens; `{req.model}` has a {context}-token context.", param=param, code="context_length_exceeded")


def failure(job: LiveJob) -> JobFailed:
    err = job.state.error
    if err is None:
        return JobFailed("the job failed", code="node_failed")
    return JobFailed(err.message, code=err.code, retry_after=err.retry_after)


async def wait_unless_disconnected(request: Request, job: LiveJob, event: asyncio.Event) -> None:
    """Wait for `event`; a client that hangs up meanwhile cancels the job."""
    if event.is_set():
        return
    done_wait = asyncio.ensure_future(event.wait())
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        finished, _ = await asyncio.wait({done_wait, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        done_wait.cancel()
        gone.cancel()
    if done_wait not in finished:
        job.request_cancel()
        raise ClientClosed()


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def generate(request: Request, key: KeyRecord, kind: str) -> Response:
    req = schemas.parse(await request.body(), schemas.ChatRequest if kind == "chat" else schemas.CompletionRequest)
    job, _ = await start_job(request, key, kind, req, schemas.client_body(req))
    assert job is not None
    # A stream starts with its first token: until then a failed attempt is retried out of
    # sight, and a job that fails before any output gets a real status (429, 404, 502...).
    await wait_unless_disconnected(request, job, job.started if req.stream else job.placed)
    if job.finished.is_set() and job.status is not JobStatus.COMPLETED and not job.delivered:
        raise failure(job)
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        request.state.engine_s = job.engine_first_s
        return StreamingResponse(stream(job, include_usage, request), media_type="text/event-stream", headers=SSE_HEADERS)
    await wait_unless_disconnected(request, job, job.finished)
    if job.status is not JobStatus.COMPLETED:
        raise failure(job)
    answered(request, job)
    return json(chat_response(job) if kind == "chat" else completion_response(job))


def answered(request: Request, job: LiveJob, *, streamed: bool = False) -> None:
    """A completed answer is going out: what infernet added goes in the response head (a
    stream's head went with its first token: `generate`), and the whole job's in the metrics."""
    if job.engine_s is None:
        return
    if not streamed:
        request.state.engine_s = job.engine_s
    plane(request).metrics.overhead(job.kind, overhead_s(request.state.t0, job.engine_s))


async def stream(job: LiveJob, include_usage: bool, request: Request) -> AsyncIterator[bytes]:
    writer = ChunkWriter(job, include_usage)
    try:
        async for batch in job.follow_batches():
            out = []
            for _, typ, data in batch:
                if typ == "token":
                    out.append(writer.token(data))
                elif typ == "done":
                    out.append(writer.done(data["finish_reason"], data["usage"]))
                else:
                    out.append(sse({"error": {"message": data.get("message"), "type": "server_error", "param": None, "code": data.get("code")}}))
            yield b"".join(out)
        if job.status is JobStatus.COMPLETED:
            answered(request, job, streamed=True)
    finally:
        if not job.finished.is_set():
            job.request_cancel()


async def chat_completions(request: Request, key: KeyRecord) -> Response:
    return await generate(request, key, "chat")


async def completions(request: Request, key: KeyRecord) -> Response:
    return await generate(request, key, "completion")


async def embeddings(request: Request, key: KeyRecord) -> Response:
    req = schemas.parse(await request.body(), schemas.EmbeddingRequest)
    job, _ = await start_job(request, key, "embedding", req, schemas.to_body(req))
    assert job is not None
    await wait_unless_disconnected(request, job, job.finished)
    if job.status is not JobStatus.COMPLETED or job.state.result is None:
        raise failure(job)
    answered(request, job)
    return json(job.state.result)


routes = [
    Route("/v1/models", keyed(list_models)),
    Route("/v1/models/{model:path}", keyed(retrieve_model)),
    Route("/v1/chat/completions", keyed(chat_completions), methods=["POST"]),
    Route("/v1/completions", keyed(completions), methods=["POST"]),
    Route("/v1/embeddings", keyed(embeddings), methods=["POST"]),
]
