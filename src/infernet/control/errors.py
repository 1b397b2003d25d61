"""Client-facing errors, always in the OpenAI shape, never a traceback."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_request(message: str, param: str | None = None, code: str | None = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


def unauthorized(message: str = "Invalid or missing API key. Pass it as `Authorization: Bearer <key>`.") -> APIError:
    return APIError(401, message, type="authentication_error", code="invalid_api_key")


def forbidden(message: str) -> APIError:
    return APIError(403, message, type="permission_error", code="forbidden")


def not_found(message: str, code: str = "not_found", param: str | None = None) -> APIError:
    return APIError(404, message, code=code, param=param)


def model_not_found(model: str) -> APIError:
    return APIError(
        404,
        f"The model `{model}` is not served by any online node. GET /v1/models lists what is.",
        code="model_not_found",
        param="model",
    )


def over_capacity(retry_after: int = 1) -> APIError:
    return APIError(
        429,
        "Every node serving this model is busy; retry shortly.",
        type="rate_limit_error",
        code="over_capacity",
        headers={"Retry-After": str(retry_after)},
    )


def no_nodes() -> APIError:
    return APIError(503, "No node is online right now; start one with `infernet start`.", type="service_unavailable", code="no_nodes")


def payment_required(message: str, code: str = "insufficient_balance") -> APIError:
    return APIError(402, message, type="insufficient_quota", code=code)


def rate_limited(retry_after: float) -> APIError:
    wait = max(1, int(retry_after + 0.999))
    return APIError(
        429,
        f"This API key is over its request rate limit; retry in {wait} s.",
        type="rate_limit_error",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(wait)},
    )


class BodyLimit:
    """ASGI middleware: refuse request bodies over `max_bytes` with a 413, read or declared."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = APIError(413, f"The request body is over {self.max_bytes // (1024 * 1024)} MiB.", code="payload_too_large")
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                return await too_large.response()(scope, receive, send)
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise too_large  # the endpoint wrapper turns it into the 413
            return message

        await self.app(scope, counted, send)
