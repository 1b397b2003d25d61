"""Frames on the node <-> control-plane WebSocket.

Node frames travel signed (see `infernet.protocol.auth`); control-plane frames are plain
JSON. Every type is frozen and validated once at the edge by msgspec. A frame bigger than
`MAX_PIECE` travels as `Part`s, each its own WebSocket message (and, from a node, each
signed), so no message ever nears a socket's size limit whatever a prompt or a result weighs.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import msgspec

PROTOCOL_VERSION = 2  # 2: frames after the hello carry a MAC, not a signature

# Every number and name a node sends lands in a database column or in a sum the books make,
# so each is bounded where it is decoded: a frame over a bound is unreadable, and skipped.
# (2**64 - 1 tokens in a Fail used to fail its job's final write, leaving the job running.)
MAX_COUNT = 2**31 - 1  # tokens, contexts, slots: an INTEGER column everywhere
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]


class Usage(msgspec.Struct, frozen=True):
    prompt_tokens: Count
    completion_tokens: Count

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ModelAd(msgspec.Struct, frozen=True):
    """A model a node serves, as it advertises it.

    `features`: the request parameters beyond plain sampling that the node's engine honours
    for this model (see `FEATURES`); `modalities`: what its input may hold. A node that
    advertises neither (an older one) serves text only, and nothing the control plane must
    refuse elsewhere is ever routed to it.
    """

    name: Annotated[str, msgspec.Meta(max_length=200)]
    kind: str = "chat"  # "chat" or "embedding"
    context_length: Count | None = None
    features: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ("text",)


# What a request may need of a model beyond text in, text out (docs/api.md lists which
# parameter needs which, and which engine honours each).
FEATURES = ("tools", "tool_choice", "json_object", "json_schema", "logprobs", "penalties", "logit_bias")
MODALITIES = ("text", "image")


# node -> control plane ----------------------------------------------------------------


class Hello(msgspec.Struct, frozen=True, tag="hello", tag_field="t"):
    pubkey: str
    backend: Annotated[str, msgspec.Meta(max_length=32)]
    models: list[ModelAd]
    capacity: Count
    tier: str
    hardware: dict[str, Any] = {}
    name: Annotated[str, msgspec.Meta(max_length=200)] = ""
    version: str = ""
    # Node's own price per million tokens (micro-USDC), within the control plane's bounds.
    price: dict[str, int] | None = None


class Heartbeat(msgspec.Struct, frozen=True, tag="heartbeat", tag_field="t"):
    active: int
    models: list[ModelAd] | None = None  # only when changed since the last frame
    tokens_per_s: float = 0.0
    capacity: Count | None = None  # only when changed (an engine restarted with other slots)


class Accept(msgspec.Struct, frozen=True, tag="accept", tag_field="t"):
    job_id: str


class Tokens(msgspec.Struct, frozen=True, tag="tokens", tag_field="t"):
    """Generated output. `tool_calls`: OpenAI-shaped stream deltas, each with its `index`
    (the first of a call carries `id` and `function.name`, later ones argument pieces);
    `logprobs`: one OpenAI chat entry (`token`, `logprob`, `bytes`, `top_logprobs`) per
    token of `text`. Both absent for plain text, which is the relay's hot path."""

    job_id: str
    text: str
    tool_calls: list[dict[str, Any]] | None = None
    logprobs: list[dict[str, Any]] | None = None
    engine_ms: float | None = None  # on a job's first frame: the engine's time to this output


class Done(msgspec.Struct, frozen=True, tag="done", tag_field="t"):
    job_id: str
    usage: Usage
    finish_reason: Annotated[str, msgspec.Meta(max_length=32)] = "stop"
    result: dict[str, Any] | None = None  # non-streamed results (embeddings)
    # The receipt the node signs when Job.receipt asked for one: the terms it was given plus
    # the usage it served (see infernet.protocol.receipts), and its BIP-340 signature.
    receipt: dict[str, Any] | None = None
    signature: str | None = None
    engine_ms: float | None = None  # the engine's time for the whole job, as the node measured it


class Fail(msgspec.Struct, frozen=True, tag="fail", tag_field="t"):
    job_id: str
    message: str
    code: str = "backend_error"
    # True when nothing reached the client yet and another node may try.
    retryable: bool = False
    usage: Usage | None = None  # what was delivered before the failure


class Part(msgspec.Struct, frozen=True, tag="part", tag_field="t"):
    """A piece of a frame too big for one message: pieces of one `id` in order, `last` ends it."""

    id: str
    index: int
    last: bool
    data: str  # a slice of the frame's JSON text


def call_text(deltas: list[dict[str, Any]] | None) -> str:
    """The text a model generated for tool-call deltas, as metering counts it: a call's
    opening `{"name": "...", "arguments": ` (how models write one) and its argument pieces."""
    if not deltas:
        return ""
    out = []
    for d in deltas:
        fn = d.get("function") or {}
        if fn.get("name"):
            out.append('{"name": "' + str(fn["name"]) + '", "arguments": ')
        out.append(str(fn.get("arguments") or ""))
    return "".join(out)


def joined(frames: list[Tokens]) -> Tokens:
    """Consecutive token frames of one job as one (the node's writer coalesces them); an
    argument piece that continues the previous call's joins it."""
    if len(frames) == 1:
        return frames[0]
    first = frames[0]
    if all(f.tool_calls is None and f.logprobs is None for f in frames):
        return Tokens(job_id=first.job_id, text="".join(f.text for f in frames), engine_ms=first.engine_ms)
    calls: list[dict[str, Any]] | None = None
    logprobs: list[dict[str, Any]] | None = None
    for f in frames:
        for d in f.tool_calls or ():
            calls = calls if calls is not None else []
            last = calls[-1] if calls else None
            if last is not None and last.get("index") == d.get("index") and "id" not in d and not (d.get("function") or {}).get("name"):
                fn = dict(last.get("function") or {})
                fn["arguments"] = str(fn.get("arguments") or "") + str((d.get("function") or {}).get("arguments") or "")
                calls[-1] = {**last, "function": fn}
            else:
                calls.append(dict(d))
        if f.logprobs:
            logprobs = (logprobs or []) + f.logprobs
    return Tokens(job_id=first.job_id, text="".join(f.text for f in frames), tool_calls=calls, logprobs=logprobs, engine_ms=first.engine_ms)


NodeFrame = Hello | Heartbeat | Accept | Tokens | Done | Fail | Part


# control plane -> node ----------------------------------------------------------------


class Welcome(msgspec.Struct, frozen=True, tag="welcome", tag_field="t"):
    session: str  # hex; binds every node frame to this connection
    ephemeral: str  # hex: the control plane's key for this session (the frames' MAC key is agreed by ECDH)
    node_id: str
    heartbeat_s: float = 10.0


class Job(msgspec.Struct, frozen=True, tag="job", tag_field="t"):
    job_id: str
    kind: str  # "chat", "completion", "embedding"
    body: dict[str, Any]
    receipt: dict[str, Any] | None = None  # receipt fields the node signs on completion


class Cancel(msgspec.Struct, frozen=True, tag="cancel", tag_field="t"):
    job_id: str


ControlFrame = Welcome | Job | Cancel | Part

node_decoder = msgspec.json.Decoder(NodeFrame)
control_decoder = msgspec.json.Decoder(ControlFrame)
encode = msgspec.json.Encoder().encode

MAX_PIECE = 1 << 20  # bytes of JSON in one WebSocket message
MAX_FRAME = 64 << 20  # bytes a frame may reach when its parts are put together


def pieces(frame: msgspec.Struct, limit: int = MAX_PIECE) -> list[bytes]:
    """The messages that carry `frame`: itself, or `Part`s when it is over `limit` bytes."""
    raw = encode(frame)
    if len(raw) <= limit:
        return [raw]
    text = raw.decode()
    step = max(1, limit // 8)  # characters: escaping inside `data` at most doubles a byte, UTF-8 at most 4
    ident = os.urandom(8).hex()
    chunks = [text[i : i + step] for i in range(0, len(text), step)]
    return [encode(Part(id=ident, index=i, last=i == len(chunks) - 1, data=c)) for i, c in enumerate(chunks)]


class FrameTooBig(ValueError):
    pass


class Assembler:
    """Puts `Part`s back together into the frame they carry; bounded in size and in how many
    frames may be half-received at once."""

    def __init__(self, max_bytes: int = MAX_FRAME, max_open: int = 16) -> None:
        self.max_bytes = max_bytes
        self.max_open = max_open
        self._open: dict[str, tuple[int, int, list[str]]] = {}  # id -> (next index, size, pieces)

    def feed(self, part: Part) -> bytes | None:
        """The whole frame's JSON once its last part is in, else None. Raises FrameTooBig or
        ValueError for parts out of order."""
        nxt, size, got = self._open.pop(part.id, (0, 0, []))
        if part.index != nxt:
            raise ValueError(f"part {part.index} of {part.id} arrived out of order")
        size += len(part.data)
        if size > self.max_bytes:
            raise FrameTooBig(f"a frame of over {self.max_bytes} bytes")
        got.append(part.data)
        if part.last:
            return "".join(got).encode()
        if len(self._open) >= self.max_open:
            raise FrameTooBig("too many frames half-sent at once")
        self._open[part.id] = (nxt + 1, size, got)
        return None
