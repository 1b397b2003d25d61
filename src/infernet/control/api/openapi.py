"""`GET /openapi.json`: the public API as an OpenAPI 3.1 document.

Request bodies are the very msgspec types the routes decode (`msgspec.json.schema_components`),
so the document cannot drift from what is validated; the routes, their parameters and who may
call them are listed here beside them. Every error answers in the OpenAI shape, declared once
as `Error` (no other field allowed), so a fuzzer can hold every 4xx to it. Not listed: the
dashboard page and its live feed (an endless stream), Prometheus text, the raw upload probe, and
the Ollama-compatible routes, which answer in Ollama's own shapes (`docs/api.md`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from infernet import __version__
from infernet.control import schemas
from infernet.control.api.keys import Credit, KeyCreate, KeyLimitsUpdate
from infernet.control.api.money import PayoutRequest
from infernet.control.money.pricing import PriceTable


class ErrorDetail(msgspec.Struct, forbid_unknown_fields=True):
    message: str
    type: str
    param: str | None
    code: str | None


class Error(msgspec.Struct, forbid_unknown_fields=True):
    """Every error the API answers: `{"error": {"message", "type", "param", "code"}}`."""

    error: ErrorDetail


BODIES: tuple[type, ...] = (
    schemas.ChatRequest, schemas.CompletionRequest, schemas.EmbeddingRequest, schemas.JobRequest,
    KeyCreate, KeyLimitsUpdate, Credit, PriceTable, PayoutRequest, Error,
)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    auth: str = "key"  # key | admin | node (X-Infernet-Auth) | none
    body: type | None = None
    ok: str = "200"
    params: tuple[dict[str, Any], ...] = ()
    streams: bool = False  # may answer text/event-stream


def _path(name: str, max_length: int = 100) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": max_length}}


def _header(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "schema": schema}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


NODE_AUTH = {"name": "X-Infernet-Auth", "in": "header", "required": True, "schema": {"type": "string", "maxLength": 2000}}
JOB_ID = _path("job_id")

OPERATIONS: tuple[Operation, ...] = (
    Operation("get", "/healthz", "Liveness and the number of online nodes", auth="none"),
    Operation("get", "/v1/models", "Models served by online nodes"),
    Operation("get", "/v1/models/{model}", "One model served by online nodes", params=(_path("model", 200),)),
    Operation("post", "/v1/chat/completions", "A chat completion, streamed (SSE) or not", body=schemas.ChatRequest, streams=True),
    Operation("post", "/v1/completions", "A text completion, streamed (SSE) or not", body=schemas.CompletionRequest, streams=True),
    Operation("post", "/v1/embeddings", "Embeddings", body=schemas.EmbeddingRequest),
    Operation("post", "/api/v1/jobs", "Submit a job; runs in the background", body=schemas.JobRequest, ok="202",
              params=(_header("Idempotency-Key", {"type": "string", "minLength": 1, "maxLength": 200}),)),
    Operation("get", "/api/v1/jobs", "This key's jobs (an admin's: the network's), newest first, filtered", params=tuple(
        _query(q, {"type": "string", "maxLength": 200}) for q in ("all", "key", "status", "model", "node", "limit", "before")
    )),
    Operation("get", "/api/v1/jobs/{job_id}", "One job", params=(JOB_ID,)),
    Operation("get", "/api/v1/jobs/{job_id}/events", "A job's stored events", params=(JOB_ID, _query("after", {"type": "string", "maxLength": 12}), _query("limit", {"type": "string", "maxLength": 12}))),
    Operation("get", "/api/v1/jobs/{job_id}/stream", "A job's events (SSE), from Last-Event-ID on", streams=True,
              params=(JOB_ID, _header("Last-Event-ID", {"type": "string", "maxLength": 12}), _query("after", {"type": "string", "maxLength": 12}))),
    Operation("post", "/api/v1/jobs/{job_id}/cancel", "Cancel a job", params=(JOB_ID,)),
    Operation("get", "/api/v1/jobs/{job_id}/receipt", "A finished job's signed receipt and settlement", params=(JOB_ID,)),
    Operation("get", "/api/v1/nodes", "The fleet"),
    Operation("get", "/api/v1/nodes/{node_id}", "One node: health, speed, recent jobs", params=(_path("node_id", 200),)),
    Operation("get", "/api/v1/platform", "The platform's public key", auth="none"),
    Operation("get", "/api/v1/pricing", "The price table"),
    Operation("put", "/api/v1/pricing", "Replace the price table", auth="admin", body=PriceTable),
    Operation("get", "/api/v1/balance", "A key's balance", params=(_query("key_id", {"type": "string", "maxLength": 100}),)),
    Operation("get", "/api/v1/balance/history", "A key's balance and spend over time", params=tuple(_query(q, {"type": "string", "maxLength": 100}) for q in ("key_id", "bucket", "span"))),
    Operation("get", "/api/v1/ledger/check", "Prove the books", auth="admin"),
    Operation("post", "/api/v1/keys", "Create an API key", auth="admin", body=KeyCreate, ok="201"),
    Operation("get", "/api/v1/keys", "List API keys", auth="admin"),
    Operation("patch", "/api/v1/keys/{key_id}", "Change a key's limits", auth="admin", body=KeyLimitsUpdate, params=(_path("key_id"),)),
    Operation("delete", "/api/v1/keys/{key_id}", "Revoke a key", auth="admin", params=(_path("key_id"),)),
    Operation("post", "/api/v1/keys/{key_id}/credit", "Credit a key's balance", auth="admin", body=Credit, params=(_path("key_id"),)),
    Operation("get", "/api/v1/node/payments", "A node's earnings (signed by the node)", auth="node",
              params=(NODE_AUTH, _query("receipts", {"type": "string", "maxLength": 12}))),
    Operation("post", "/api/v1/node/payouts", "Claim a node's unpaid receipts (signed by the node)", auth="node", body=PayoutRequest, ok="201", params=(NODE_AUTH,)),
    Operation("get", "/api/v1/probe/ping", "An empty answer, for round-trip time", auth="none"),
    Operation("get", "/api/v1/probe/whoami", "What the control plane knows of the signing node", auth="node", params=(NODE_AUTH,)),
)

_ERROR = {"description": "An error, in the OpenAI shape", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _operation(op: Operation) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {}}
    if op.streams:
        content["text/event-stream"] = {}
    out: dict[str, Any] = {
        "summary": op.summary,
        "operationId": f"{op.method}_{op.path.strip('/').replace('/', '_').replace('{', '').replace('}', '')}",
        "responses": {op.ok: {"description": "OK", "content": content}, "default": _ERROR},
    }
    if op.params:
        out["parameters"] = list(op.params)
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}}}}
    out["security"] = {"key": [{"bearer": []}], "admin": [{"bearer": []}], "node": [], "none": []}[op.auth]
    return out


@functools.cache
def document() -> bytes:
    _, components = msgspec.json.schema_components(BODIES, ref_template="#/components/schemas/{name}")
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "infernet control plane", "version": __version__, "description": "OpenAI-compatible inference API, jobs, keys and money."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
    return msgspec.json.encode(doc)


async def openapi_json(request: Request) -> Response:
    return Response(document(), media_type="application/json")


routes = [Route("/openapi.json", openapi_json)]
