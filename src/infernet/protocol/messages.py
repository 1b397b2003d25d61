"""Frames on the node <-> control-plane WebSocket.

Node frames travel signed (see `infernet.protocol.auth`); control-plane frames are plain
JSON text. Every type is frozen and validated once at the edge by msgspec.
"""

from __future__ import annotations

from typing import Any

import msgspec

PROTOCOL_VERSION = 1


class Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ModelAd(msgspec.Struct, frozen=True):
    """A model a node serves, as it advertises it."""

    name: str
    kind: str = "chat"  # "chat" or "embedding"
    context_length: int | None = None


# node -> control plane ----------------------------------------------------------------


class Hello(msgspec.Struct, frozen=True, tag="hello", tag_field="t"):
    pubkey: str
    backend: str
    models: list[ModelAd]
    capacity: int
    tier: str
    hardware: dict[str, Any] = {}
    name: str = ""
    version: str = ""
    # Node's own price per million tokens (micro-USDC), within the control plane's bounds.
    price: dict[str, int] | None = None


class Heartbeat(msgspec.Struct, frozen=True, tag="heartbeat", tag_field="t"):
    active: int
    models: list[ModelAd] | None = None  # only when changed since the last frame
    tokens_per_s: float = 0.0
    capacity: int | None = None  # only when changed (an engine restarted with other slots)


class Accept(msgspec.Struct, frozen=True, tag="accept", tag_field="t"):
    job_id: str


class Tokens(msgspec.Struct, frozen=True, tag="tokens", tag_field="t"):
    job_id: str
    text: str


class Done(msgspec.Struct, frozen=True, tag="done", tag_field="t"):
    job_id: str
    usage: Usage
    finish_reason: str = "stop"
    result: dict[str, Any] | None = None  # non-streamed results (embeddings)
    # The receipt the node signs when Job.receipt asked for one: the terms it was given plus
    # the usage it served (see infernet.protocol.receipts), and its BIP-340 signature.
    receipt: dict[str, Any] | None = None
    signature: str | None = None


class Fail(msgspec.Struct, frozen=True, tag="fail", tag_field="t"):
    job_id: str
    message: str
    code: str = "backend_error"
    # True when nothing reached the client yet and another node may try.
    retryable: bool = False
    usage: Usage | None = None  # what was delivered before the failure


NodeFrame = Hello | Heartbeat | Accept | Tokens | Done | Fail


# control plane -> node ----------------------------------------------------------------


class Welcome(msgspec.Struct, frozen=True, tag="welcome", tag_field="t"):
    session: str  # hex; binds every signed node frame to this connection
    node_id: str
    heartbeat_s: float = 10.0


class Job(msgspec.Struct, frozen=True, tag="job", tag_field="t"):
    job_id: str
    kind: str  # "chat", "completion", "embedding"
    body: dict[str, Any]
    receipt: dict[str, Any] | None = None  # receipt fields the node signs on completion


class Cancel(msgspec.Struct, frozen=True, tag="cancel", tag_field="t"):
    job_id: str


ControlFrame = Welcome | Job | Cancel

node_decoder = msgspec.json.Decoder(NodeFrame)
control_decoder = msgspec.json.Decoder(ControlFrame)
encode = msgspec.json.Encoder().encode
