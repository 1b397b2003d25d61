"""OpenAI request bodies, validated once at the edge with msgspec.

Validation errors become 400s naming the offending parameter. Unknown fields are accepted
and ignored, as OpenAI-compatible servers do, so that new client libraries keep working.
"""

from __future__ import annotations

from collections.abc import Iterable
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
Penalty = Annotated[float, msgspec.Meta(ge=-2, le=2)]
# OpenAI: token ids (as JSON object keys) to a bias in -100..100, at most 300 of them.
LogitBias = Annotated[dict[Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,9}$")], Annotated[float, msgspec.Meta(ge=-100, le=100)]], msgspec.Meta(max_length=300)]
Name = Annotated[str, msgspec.Meta(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]  # a function's or a schema's, as OpenAI allows
Role = Literal["system", "developer", "user", "assistant", "tool"]
JSON = dict[str, Any]

# A content part's type -> the input modality it needs of the model (text needs none).
PART_MODALITY = {"image_url": "image", "input_audio": "audio", "file": "file"}


class ImageURL(msgspec.Struct, omit_defaults=True):
    url: Annotated[str, msgspec.Meta(min_length=1)]
    detail: Literal["auto", "low", "high"] | None = None


class ContentPart(msgspec.Struct, omit_defaults=True):
    type: Literal["text", "image_url", "input_audio", "file", "refusal"]
    text: str | None = None
    image_url: ImageURL | None = None
    refusal: str | None = None
    input_audio: JSON | None = None
    file: JSON | None = None


class FunctionCall(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    arguments: str


class ToolCall(msgspec.Struct):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    function: FunctionCall
    type: Literal["function"] = "function"


class Message(msgspec.Struct, omit_defaults=True):
    role: Role
    content: str | list[ContentPart] | None = None
    name: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    tool_calls: Annotated[list[ToolCall], msgspec.Meta(max_length=128)] | None = None  # an assistant's earlier calls
    tool_call_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None  # a tool message answers this call


class StreamOptions(msgspec.Struct):
    include_usage: bool = False


class FunctionDef(msgspec.Struct, omit_defaults=True):
    name: Name
    description: str | None = None
    parameters: JSON | None = None  # a JSON Schema; none: a function of no arguments
    strict: bool | None = None


class Tool(msgspec.Struct):
    function: FunctionDef
    type: Literal["function"] = "function"


class NamedFunction(msgspec.Struct):
    name: Name


class NamedToolChoice(msgspec.Struct):
    function: NamedFunction
    type: Literal["function"] = "function"


class JsonSchemaSpec(msgspec.Struct, omit_defaults=True):
    name: Name
    description: str | None = None
    schema: JSON | None = None
    strict: bool | None = None


class TextFormat(msgspec.Struct, tag="text", tag_field="type"):
    pass


class JsonObjectFormat(msgspec.Struct, tag="json_object", tag_field="type"):
    pass


class JsonSchemaFormat(msgspec.Struct, tag="json_schema", tag_field="type"):
    json_schema: JsonSchemaSpec


Tier = Literal[">=48gb", ">=24gb", ">=12gb", ">=8gb", "cpu"]


class Routing(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The `infernet` extension object: how the job may be routed (docs/routing.md)."""

    max_price: Annotated[int, msgspec.Meta(ge=0, le=bounds.MAX_RATE)] | None = None  # micro-USDC per million output tokens
    min_tier: Tier | None = None
    node: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None  # preferred node: hex pubkey or npub
    max_latency_ms: Annotated[float, msgspec.Meta(gt=0, le=3_600_000)] | None = None


# Parameters no engine here honours, refused by name rather than ignored (docs/api.md).
_NEVER = ("audio", "prediction", "functions", "function_call", "web_search_options", "suffix")


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
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: LogitBias | None = None
    # Refused when present (`_NEVER`): typed loosely so the refusal names them.
    audio: Any = None
    prediction: Any = None
    functions: Any = None
    function_call: Any = None
    web_search_options: Any = None
    suffix: Any = None

    def check(self) -> None:
        """What a field's type cannot say: refusals and rules across fields, as OpenAI has them."""
        for name in _NEVER:
            if getattr(self, name) is not None:
                hint = " Use `tools` and `tool_choice`." if name.startswith("function") else ""
                raise InvalidRequest(f"`{name}` is not supported here.{hint}", param=name, code="unsupported_parameter")


class ChatRequest(_Sampling, kw_only=True):
    messages: Annotated[list[Message], msgspec.Meta(min_length=1)]
    max_completion_tokens: OutputTokens | None = None
    tools: Annotated[list[Tool], msgspec.Meta(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: TextFormat | JsonObjectFormat | JsonSchemaFormat | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, msgspec.Meta(ge=0, le=20)] | None = None
    modalities: list[Literal["text", "audio"]] | None = None

    def check(self) -> None:
        super().check()
        if self.modalities is not None and "audio" in self.modalities:
            raise InvalidRequest("Audio output is not supported here; `modalities` may only be [\"text\"].", param="modalities", code="unsupported_value")
        names = [t.function.name for t in self.tools or ()]
        if len(set(names)) != len(names):
            raise InvalidRequest("Each tool needs a different function name.", param="tools")
        if not self.tools:
            for param in ("tool_choice", "parallel_tool_calls"):
                if getattr(self, param) is not None:
                    raise InvalidRequest(f"`{param}` is only allowed when `tools` are given.", param=param)
        choice = self.tool_choice
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            raise InvalidRequest(f"`tool_choice` names the function `{choice.function.name}`, which is not in `tools`.", param="tool_choice")
        if self.top_logprobs is not None and not self.logprobs:
            raise InvalidRequest("`top_logprobs` needs `logprobs: true`.", param="top_logprobs")
        for i, m in enumerate(self.messages):
            if m.role == "tool" and m.tool_call_id is None:
                raise InvalidRequest(f"`messages[{i}]` is a tool message without `tool_call_id`.", param=f"messages[{i}].tool_call_id")
            if m.tool_calls is not None and m.role != "assistant":
                raise InvalidRequest(f"`messages[{i}]`: only assistant messages carry `tool_calls`.", param=f"messages[{i}].tool_calls")
            if isinstance(m.content, list):
                for j, part in enumerate(m.content):
                    if part.type == "text" and part.text is None:
                        raise InvalidRequest(f"`messages[{i}].content[{j}]` is a text part without `text`.", param=f"messages[{i}].content[{j}].text")
                    if part.type == "image_url" and part.image_url is None:
                        raise InvalidRequest(f"`messages[{i}].content[{j}]` is an image part without `image_url`.", param=f"messages[{i}].content[{j}].image_url")
                    if part.type in PART_MODALITY and m.role != "user":
                        raise InvalidRequest(f"`messages[{i}]`: only user messages may carry {part.type} parts.", param=f"messages[{i}].content[{j}]")


class CompletionRequest(_Sampling, kw_only=True):
    prompt: str | Annotated[list[str], msgspec.Meta(min_length=1, max_length=1)]
    echo: bool = False
    logprobs: Annotated[int, msgspec.Meta(ge=0, le=5)] | None = None
    best_of: Annotated[int, msgspec.Meta(ge=1, le=1)] | None = None

    def check(self) -> None:
        super().check()
        if self.echo:
            raise InvalidRequest("`echo` is not supported here.", param="echo", code="unsupported_parameter")


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
    at = text.rfind("`$.")  # "... at `$.x.y`", or "... at `key` in `$.x`"
    if at < 0:
        return None
    parts = text[at + 3 :].rstrip("`").split("[")[0].split(".")
    if parts[0] == "infernet" and len(parts) > 1:  # name the field inside the extension object
        return ".".join(parts[:2])
    return parts[0] or None


def parse(raw: bytes, kind: type[msgspec.Struct]) -> Any:
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        req = msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Invalid request: {exc}", param=_param_of(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:  # msgspec's guard against stack exhaustion: about 1,000 levels
        raise InvalidRequest("The request body nests too deeply.", code="invalid_json") from None
    check = getattr(req, "check", None)
    if check is not None:
        check()
    return req


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


def needs(kind: str, body: dict[str, Any]) -> dict[str, str]:
    """What a normalized request needs of the model beyond text in, text out: each feature
    or input modality (the names `ModelAd` advertises) -> the parameter that needs it, for
    the refusal's message. Defaults (a zero penalty, `tool_choice: "none"`) need nothing."""
    out: dict[str, str] = {}
    if kind == "embedding":
        return out
    choice = body.get("tool_choice")
    if body.get("tools") and choice != "none":
        out["tools"] = "tools"
        if choice == "required" or isinstance(choice, dict):  # forcing a call, not just offering tools
            out["tool_choice"] = "tool_choice"
    fmt = (body.get("response_format") or {}).get("type")
    if fmt in ("json_object", "json_schema"):
        out[fmt] = "response_format"
    if body.get("logprobs") not in (None, False):
        out["logprobs"] = "logprobs"
    for param in ("presence_penalty", "frequency_penalty"):
        if body.get(param):
            out.setdefault("penalties", param)
    if body.get("logit_bias"):
        out["logit_bias"] = "logit_bias"
    for i, m in enumerate(body.get("messages") or ()):
        if m.get("tool_calls") or m.get("role") == "tool":
            out.setdefault("tools", f"messages[{i}]")
        content = m.get("content")
        if isinstance(content, list):
            for part in content:
                modality = PART_MODALITY.get(part.get("type"))
                if modality is not None:
                    out.setdefault(modality, f"messages[{i}].content")
    return out


def route_of(req: Any, needs: Iterable[str] = ()) -> RouteRequest:
    """The router's view of a request: its model, what it needs of the model, and its
    `infernet` constraints."""
    need = frozenset(needs)
    r: Routing | None = getattr(req, "infernet", None)
    if r is None:
        return RouteRequest(req.model, needs=need)
    node = r.node
    if node is not None:
        try:
            node = keys.pubkey_from_npub(node) if node.startswith("npub1") else node.lower()
        except Exception:
            raise InvalidRequest("`infernet.node` must be a node id: a hex public key or an npub.", param="infernet.node") from None
        if len(node) != 64 or any(c not in "0123456789abcdef" for c in node):
            raise InvalidRequest("`infernet.node` must be a node id: a hex public key or an npub.", param="infernet.node")
    return RouteRequest(req.model, needs=need, max_price=r.max_price, min_tier=r.min_tier, preferred_node=node, max_latency_ms=r.max_latency_ms)
