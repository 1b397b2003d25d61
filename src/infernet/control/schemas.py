"""OpenAI request bodies, validated once at the edge with msgspec.

Validation errors become 400s naming the offending parameter. Unknown fields are accepted
and ignored, as OpenAI-compatible servers do, so that new client libraries keep working.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from infernet.control import bounds
from infernet.control.dispatch.router import RouteRequest
from infernet.control.errors import InvalidRequest
from infernet.protocol import keys

OutputTokens = Annotated[int, msgspec.Meta(ge=1, le=bounds.MAX_OUTPUT_TOKENS)]
Seed = Annotated[int, msgspec.Meta(ge=bounds.INT64[0], le=bounds.INT64[1])]
Stop = Annotated[str, msgspec.Meta(max_length=bounds.MAX_STOP_CHARS)]
Temperature = Annotated[float, msgspec.Meta(ge=0, le=2)]
TopP = Annotated[float, msgspec.Meta(ge=0, le=1)]
Role = Literal["system", "developer", "user", "assistant", "tool"]


class ContentPart(msgspec.Struct):
    type: str
    text: str | None = None


class Message(msgspec.Struct):
    role: Role
    content: str | list[ContentPart] | None = None
    name: Annotated[str, msgspec.Meta(max_length=256)] | None = None


class StreamOptions(msgspec.Struct):
    include_usage: bool = False


Tier = Literal[">=48gb", ">=24gb", ">=12gb", ">=8gb", "cpu"]


class Routing(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The `infernet` extension object: how the job may be routed (docs/routing.md)."""

    max_price: Annotated[int, msgspec.Meta(ge=0, le=bounds.MAX_RATE)] | None = None  # micro-USDC per million output tokens
    min_tier: Tier | None = None
    node: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None  # preferred node: hex pubkey or npub
    max_latency_ms: Annotated[float, msgspec.Meta(gt=0, le=3_600_000)] | None = None


class _Sampling(msgspec.Struct, kw_only=True):
    model: Annotated[str, msgspec.Meta(min_length=1)]
    infernet: Routing | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: OutputTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stop: Stop | Annotated[list[Stop], msgspec.Meta(max_length=4)] | None = None
    seed: Seed | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=1)] = 1
    user: str | None = None


class ChatRequest(_Sampling, kw_only=True):
    messages: Annotated[list[Message], msgspec.Meta(min_length=1)]
    max_completion_tokens: OutputTokens | None = None


class CompletionRequest(_Sampling, kw_only=True):
    prompt: str | Annotated[list[str], msgspec.Meta(min_length=1, max_length=1)]
    echo: bool = False


class EmbeddingRequest(msgspec.Struct, kw_only=True):
    model: Annotated[str, msgspec.Meta(min_length=1)]
    input: Annotated[str, msgspec.Meta(min_length=1)] | Annotated[list[str], msgspec.Meta(min_length=1, max_length=2048)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, msgspec.Meta(ge=1, le=65_536)] | None = None
    user: str | None = None
    infernet: Routing | None = None


class JobRequest(msgspec.Struct, kw_only=True):
    """`POST /api/v1/jobs`: a chat job (messages) or a completion job (prompt)."""

    model: Annotated[str, msgspec.Meta(min_length=1)]
    messages: Annotated[list[Message], msgspec.Meta(min_length=1)] | None = None
    prompt: str | None = None
    max_tokens: OutputTokens | None = None
    max_completion_tokens: OutputTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stop: Stop | Annotated[list[Stop], msgspec.Meta(max_length=4)] | None = None
    seed: Seed | None = None
    infernet: Routing | None = None


def _param_of(err: msgspec.ValidationError) -> str | None:
    text = str(err)
    at = text.rfind("at `$.")
    if at < 0:
        return None
    parts = text[at + 6 :].rstrip("`").split("[")[0].split(".")
    if parts[0] == "infernet" and len(parts) > 1:  # name the field inside the extension object
        return ".".join(parts[:2])
    return parts[0] or None


def parse(raw: bytes, kind: type[msgspec.Struct]) -> Any:
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Invalid request: {exc}", param=_param_of(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:  # msgspec's guard against stack exhaustion: about 1,000 levels
        raise InvalidRequest("The request body nests too deeply.", code="invalid_json") from None


def to_body(req: msgspec.Struct) -> dict[str, Any]:
    """The validated request as the plain dict every later reader takes (the hold, the
    router's checks, the node's engine, metering): unset fields dropped, the `infernet`
    routing object dropped (the node never sees how it was chosen), and one output cap,
    `max_tokens`, where `max_completion_tokens` wins as in OpenAI and vLLM."""
    body = {k: v for k, v in msgspec.to_builtins(req).items() if v is not None and k != "infernet"}
    cap = body.pop("max_completion_tokens", None)
    if cap is not None:
        body["max_tokens"] = cap
    return body


def client_body(req: msgspec.Struct) -> dict[str, Any]:
    """What the node receives for a chat or completion request: streaming is the control
    plane's business, not the engine's."""
    body = to_body(req)
    body.pop("stream", None)
    body.pop("stream_options", None)
    return body


def route_of(req: Any) -> RouteRequest:
    """The router's view of a request: its model and its `infernet` constraints."""
    r: Routing | None = getattr(req, "infernet", None)
    if r is None:
        return RouteRequest(req.model)
    node = r.node
    if node is not None:
        try:
            node = keys.pubkey_from_npub(node) if node.startswith("npub1") else node.lower()
        except Exception:
            raise InvalidRequest("`infernet.node` must be a node id: a hex public key or an npub.", param="infernet.node") from None
        if len(node) != 64 or any(c not in "0123456789abcdef" for c in node):
            raise InvalidRequest("`infernet.node` must be a node id: a hex public key or an npub.", param="infernet.node")
    return RouteRequest(req.model, max_price=r.max_price, min_tier=r.min_tier, preferred_node=node, max_latency_ms=r.max_latency_ms)
