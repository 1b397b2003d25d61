"""Domain errors: what went wrong, in the control plane's own words.

Nothing here knows HTTP. The edge (`api/errors.py`) maps each class to a status code and
the OpenAI error shape, once.
"""

from __future__ import annotations


class InfernetError(Exception):
    code = "error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or type(self).code
        self.param = param
        self.retry_after = retry_after


class InvalidRequest(InfernetError):
    """The client sent something we cannot take; `param` names it."""

    code = "invalid_value"


class Unauthorized(InfernetError):
    code = "invalid_api_key"

    def __init__(self, message: str = "Invalid or missing API key. Pass it as `Authorization: Bearer <key>`.", **kw: str) -> None:
        super().__init__(message, **kw)


class BadSignature(InfernetError):
    """A node-signed request whose signature, clock or nonce does not check out."""

    code = "invalid_signature"


class Forbidden(InfernetError):
    code = "forbidden"


class NotFound(InfernetError):
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model `{model}` is not served by any online node. GET /v1/models lists what is.", param="model")


class Conflict(InfernetError):
    code = "conflict"


class PayloadTooLarge(InfernetError):
    code = "payload_too_large"


class PaymentRequired(InfernetError):
    code = "insufficient_balance"


class RateLimited(InfernetError):
    code = "rate_limit_exceeded"

    def __init__(self, retry_after: float) -> None:
        wait = max(1, int(retry_after + 0.999))
        super().__init__(f"This API key is over its request rate limit; retry in {wait} s.", retry_after=wait)


class NoNodes(InfernetError):
    code = "no_nodes"

    def __init__(self) -> None:
        super().__init__("No node is online right now; start one with `infernet start`.")


class JobFailed(InfernetError):
    """A job ended without an answer before anything was sent to the client; `code` is the
    job's error code (model_not_found, over_capacity, node_failed, ...)."""


class ClientClosed(InfernetError):
    code = "client_closed"

    def __init__(self) -> None:
        super().__init__("client closed the request")
