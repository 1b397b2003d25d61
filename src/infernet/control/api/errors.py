"""Domain errors to HTTP, in one place: status codes and the OpenAI error shape
`{"error": {"message", "type", "param", "code"}}`. Never a traceback."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from infernet.control import errors as E

log = logging.getLogger("infernet.control")

_STATUS: tuple[tuple[type[E.InfernetError], int], ...] = (
    (E.InvalidRequest, 400),
    (E.Unauthorized, 401),
    (E.BadSignature, 401),
    (E.PaymentRequired, 402),
    (E.Forbidden, 403),
    (E.NotFound, 404),
    (E.Conflict, 409),
    (E.PayloadTooLarge, 413),
    (E.RateLimited, 429),
    (E.ClientClosed, 499),
    (E.NoNodes, 503),
)

# A failed job's error code -> the status a client sees before streaming starts.
_JOB_STATUS = {
    "model_not_found": 404,
    "over_capacity": 429,
    "no_eligible_node": 503,
    "context_length_exceeded": 400,
    "invalid_request": 400,
}

_TYPE = {401: "authentication_error", 402: "insufficient_quota", 403: "permission_error", 429: "rate_limit_error", 503: "service_unavailable"}


def status_of(exc: E.InfernetError) -> int:
    if isinstance(exc, E.JobFailed):
        return _JOB_STATUS.get(exc.code, 502)
    return next((status for cls, status in _STATUS if isinstance(exc, cls)), 500)


def error_body(message: str, type: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def type_of(status: int) -> str:
    return _TYPE.get(status, "invalid_request_error" if status < 500 else "server_error")


def response(exc: E.InfernetError) -> Response:
    status = status_of(exc)
    headers = {"Retry-After": str(exc.retry_after or 1)} if status == 429 else None
    return Response(msgspec.json.encode(error_body(exc.message, type_of(status), exc.code, exc.param)), status, headers, media_type="application/json")


async def on_domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, E.InfernetError)
    return response(exc)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    body = error_body(str(exc.detail), type_of(exc.status_code), code)
    return Response(msgspec.json.encode(body), exc.status_code, media_type="application/json")


async def on_crash(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path)
    body = error_body("Internal error; the control plane logged it.", "server_error", "internal_error")
    return Response(msgspec.json.encode(body), 500, media_type="application/json")


HANDLERS = {E.InfernetError: on_domain_error, HTTPException: on_http_error, Exception: on_crash}
