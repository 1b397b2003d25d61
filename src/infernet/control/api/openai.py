"""The OpenAI-compatible routes: models, chat and text completions (streamed or not), embeddings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from infernet.control import schemas
from infernet.control.api.deps import json, keyed, plane
from infernet.control.api.openai_format import (
    ChunkWriter,
    chat_response,
    completion_response,
    sse,
)
from infernet.control.dispatch.jobs import JobStatus
from infernet.control.dispatch.live import LiveJob
from infernet.control.errors import ClientClosed, InvalidRequest, JobFailed
from infernet.control.money import metering
from infernet.control.store import KeyRecord

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def list_models(request: Request, key: KeyRecord) -> Response:
    placement = plane(request).placement
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "infernet", "kind": kind, "nodes": len(placement.serving(name)), "context_length": placement.context_of(name)}
        for name, kind in sorted(placement.models().items())
    ]
    return json({"object": "list", "data": data})


async def start_job(request: Request, key: KeyRecord, kind: str, req: Any, body: dict[str, Any], idem: str | None = None) -> tuple[LiveJob | None, dict | None]:
    """Check the request against the fleet and submit: (live job, None), or (live or None,
    existing row) for a reused idempotency key."""
    cp = plane(request)
    model = req.model
    route = schemas.route_of(req)
    served_kind = cp.placement.kind_of(model)
    if (kind == "embedding") != (served_kind == "embedding"):
        what = "n embedding" if served_kind == "embedding" else " chat"
        raise InvalidRequest(f"`{model}` is a{what} model; use the matching endpoint.", param="model", code="model_not_supported")
    await check_context(cp, kind, req, body)
    return await cp.driver.submit(key.id, kind, model, body, idem, route)


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
        return StreamingResponse(stream(job, include_usage), media_type="text/event-stream", headers=SSE_HEADERS)
    await wait_unless_disconnected(request, job, job.finished)
    if job.status is not JobStatus.COMPLETED:
        raise failure(job)
    return json(chat_response(job) if kind == "chat" else completion_response(job))


async def stream(job: LiveJob, include_usage: bool) -> AsyncIterator[bytes]:
    writer = ChunkWriter(job, include_usage)
    try:
        async for _, typ, data in job.follow():
            if typ == "token":
                yield writer.text(data["text"])
            elif typ == "done":
                yield writer.done(data["finish_reason"], data["usage"])
            else:
                yield sse({"error": {"message": data.get("message"), "type": "server_error", "param": None, "code": data.get("code")}})
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
    return json(job.state.result)


routes = [
    Route("/v1/models", keyed(list_models)),
    Route("/v1/chat/completions", keyed(chat_completions), methods=["POST"]),
    Route("/v1/completions", keyed(completions), methods=["POST"]),
    Route("/v1/embeddings", keyed(embeddings), methods=["POST"]),
]
