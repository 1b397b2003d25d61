"""The job API: create (with Idempotency-Key), read, list with filters, events, stream with
re-attach, cancel. A client key only ever sees its own jobs; an admin may list the network's."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from infernet.control import bounds, schemas
from infernet.control.api import params
from infernet.control.api.deps import json, keyed, plane
from infernet.control.api.openai import SSE_HEADERS, start_job
from infernet.control.bus import CancelJob
from infernet.control.errors import Conflict, InvalidRequest, NotFound
from infernet.control.store import TERMINAL, KeyRecord

if TYPE_CHECKING:
    from infernet.control.plane import ControlPlane

STATUSES = ("queued", "assigned", "running", *TERMINAL)
MAX_LIST = 200
MAX_EVENTS = 1000


def view(row: dict[str, Any]) -> dict[str, Any]:
    usage = None
    if row.get("prompt_tokens") is not None:
        usage = {"prompt_tokens": row["prompt_tokens"], "completion_tokens": row["completion_tokens"], "total_tokens": row["prompt_tokens"] + row["completion_tokens"]}
    return {
        "id": row["id"], "object": "job", "key_id": row["key_id"], "status": row["status"], "kind": row["kind"], "model": row["model"],
        "node_id": row.get("node_id"), "created_at": row["created_at"], "finished_at": row.get("finished_at"), "attempts": row.get("attempts", 0),
        "result": {"text": row.get("output"), "finish_reason": row.get("finish_reason")} if row["status"] == "completed" else None,
        "usage": usage,
        "error": {"message": row["error"]} if row.get("error") else None,
    }


async def own_job(request: Request, job_id: str, key: KeyRecord) -> dict[str, Any]:
    cp = plane(request)
    live = cp.driver.jobs.get(job_id)
    row = live.row() if live is not None else await cp.store.jobs.get(job_id)
    # Another key's job is reported as missing, not forbidden: ids leak nothing.
    if row is None or (row["key_id"] != key.id and not key.is_admin):
        raise NotFound(f"No job `{job_id}`.", code="job_not_found")
    return row


async def settled_job(request: Request, job_id: str, key: KeyRecord) -> dict[str, Any]:
    """The job's row; when it just finished here, once its end is stored and settled."""
    row = await own_job(request, job_id, key)
    live = plane(request).driver.jobs.get(row["id"])
    if live is not None and live.finished.is_set() and not live.ended.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(live.ended.wait(), 5.0)
        row = await own_job(request, job_id, key)
    return row


async def create_job(request: Request, key: KeyRecord) -> Response:
    req = schemas.parse(await request.body(), schemas.JobRequest)
    if (req.messages is None) == (req.prompt is None):
        raise InvalidRequest("A job needs exactly one of `messages` (chat) or `prompt` (completion).", param="messages")
    body = schemas.to_body(req)
    kind = "chat" if req.messages is not None else "completion"
    idem = request.headers.get("idempotency-key")
    if idem is not None and not 1 <= len(idem) <= 200:
        raise InvalidRequest("Idempotency-Key must be 1 to 200 characters.", param="Idempotency-Key")
    job, existing = await start_job(request, key, kind, req, body, idem, origin="jobs")
    if existing is not None:
        if (existing["kind"], existing["model"], existing["body"]) != (kind, req.model, body):
            raise Conflict("This Idempotency-Key was already used with a different request; use a new key.", param="Idempotency-Key", code="idempotency_key_reused")
        return json(view(existing), 200)
    assert job is not None
    return json(view(await own_job(request, job.id, key)), 202, headers={"Location": f"/api/v1/jobs/{job.id}"})


async def get_job(request: Request, key: KeyRecord) -> Response:
    return json(view(await settled_job(request, request.path_params["job_id"], key)))


async def list_jobs(request: Request, key: KeyRecord) -> Response:
    """Newest first. `all=1` (admin): every key's jobs, `key=` one key's; a client key gets
    its own whatever it asks. Filters: `status`, `model`, `node`; pages: `limit`, `before`."""
    cp = plane(request)
    everyone = params.flag(request, "all")
    wanted_key = params.matching(request, "key", params.KEY_ID, "an API key id (key_...)")
    if not key.is_admin:
        owner: str | None = key.id
    else:
        owner = wanted_key or (None if everyone else key.id)
    filters = {
        "status": params.choice(request, "status", STATUSES),
        "model": params.text(request, "model", 200),
        "node_id": params.matching(request, "node", params.NODE_ID, "a node id (64 hex characters)"),
        "before": params.number(request, "before"),
    }
    limit = params.integer(request, "limit", 50, 1, MAX_LIST)
    data = await listed(cp, owner, limit, **filters)
    return json({"object": "list", "data": data, "has_more": len(data) == limit})


async def listed(cp: ControlPlane, owner: str | None, limit: int, **filters: Any) -> list[dict[str, Any]]:
    """Jobs as the API shows them, read from the database, live ones as they are now."""
    await cp.store.journal.flush()  # a list is read from the database: let it catch up first
    live = cp.driver.jobs
    rows = await cp.store.jobs.list(owner, limit, **filters)
    return [view(live[r["id"]].row() if r["id"] in live else r) for r in rows]


async def job_events(request: Request, key: KeyRecord) -> Response:
    """The job's events after `after` (token batches, then done or error): from memory while
    it lives here, else as stored."""
    cp = plane(request)
    row = await own_job(request, request.path_params["job_id"], key)
    after = params.integer(request, "after", 0, 0, 10**9)
    limit = params.integer(request, "limit", MAX_EVENTS, 1, MAX_EVENTS)
    live = cp.driver.jobs.get(row["id"])
    if live is not None:
        events = live.events[after:after + limit]
    else:
        events = await cp.store.jobs.events_after(row["id"], after, limit)
    data = [{"seq": seq, "type": typ, "data": body} for seq, typ, body in events]
    return json({"object": "list", "job_id": row["id"], "data": data, "has_more": len(data) == limit})


async def cancel_job(request: Request, key: KeyRecord) -> Response:
    """Cancel a job wherever it runs: here, or through the bus at the replica driving it."""
    cp = plane(request)
    row = await own_job(request, request.path_params["job_id"], key)
    live = cp.driver.jobs.get(row["id"])
    wait = cp.settings.cancel_grace_s + 1
    if live is not None:
        live.request_cancel("cancelled by the client")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(live.finished.wait(), wait)
    elif row["status"] not in TERMINAL and row.get("owner"):
        cp.bus.tell(row["owner"], CancelJob(row["id"]))
        await _until_ended(cp, row["id"], wait)
    return json(view(await own_job(request, row["id"], key)))


async def _until_ended(cp: ControlPlane, job_id: str, timeout: float) -> dict[str, Any] | None:
    """The job's row once it is final (or as it is after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        row = await cp.store.jobs.get(job_id)
        if row is None or row["status"] in TERMINAL or time.monotonic() >= deadline:
            return row
        await asyncio.sleep(0.1)


async def stream_job(request: Request, key: KeyRecord) -> Response:
    """A job's events from Last-Event-ID on, at any replica: live from here or from the
    replica driving it, else as stored once the job has ended."""
    cp = plane(request)
    row = await own_job(request, request.path_params["job_id"], key)
    last = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    if not (last.isascii() and last.isdigit() and len(last) <= 10 and int(last) <= bounds.MAX_EVENT_ID):
        raise InvalidRequest(f"Last-Event-ID must be an event number from 0 to {bounds.MAX_EVENT_ID}.", param="Last-Event-ID")
    job_id, after = row["id"], int(last)
    # How long to wait for a job whose replica went away: until a sweep takes it over.
    patience = 2 * cp.settings.lease_s + cp.settings.queue_timeout_s

    async def events() -> AsyncIterator[bytes]:
        seen, deadline = after, time.monotonic() + patience
        while True:
            current = await cp.store.jobs.get(job_id) if job_id not in cp.driver.jobs else None
            if current is not None and current["status"] in TERMINAL:
                source: AsyncIterator[Any] = _stored(cp, job_id, seen)
            else:
                source = cp.driver.follow(job_id, seen, current.get("owner") if current else None)
            async for seq, typ, data in source:
                seen = seq
                yield f"id: {seq}\nevent: {typ}\n".encode() + b"data: " + msgspec.json.encode(data) + b"\n\n"
                if typ in ("done", "error"):
                    return
            if (current is not None and current["status"] in TERMINAL) or time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.5)  # its replica went away: wait for the sweep to settle it

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)


async def _stored(cp: ControlPlane, job_id: str, after: int) -> AsyncIterator[tuple[int, str, dict]]:
    for event in await cp.store.jobs.events_after(job_id, after):
        yield event


routes = [
    Route("/api/v1/jobs", keyed(create_job), methods=["POST"]),
    Route("/api/v1/jobs", keyed(list_jobs), methods=["GET"]),
    Route("/api/v1/jobs/{job_id}", keyed(get_job)),
    Route("/api/v1/jobs/{job_id}/events", keyed(job_events)),
    Route("/api/v1/jobs/{job_id}/stream", keyed(stream_job)),
    Route("/api/v1/jobs/{job_id}/cancel", keyed(cancel_job), methods=["POST"]),
]
