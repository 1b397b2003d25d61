"""The one seam between a node and an inference engine.

Bodies are OpenAI-shaped request dicts that the control plane already validated, carrying
only parameters the adapter advertised it honours for the model (`ModelAd.features`). `chat` and
`complete` yield `Chunk`s; the last one carries `finish_reason` and the engine's real `usage`.
Closing the iterator (`aclose`) aborts the engine request at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from infernet.protocol.messages import ModelAd, Usage


class BackendError(Exception):
    """One job failed in the engine. `retryable` when another node could serve it."""

    def __init__(self, message: str, *, retryable: bool = False, code: str = "backend_error") -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.code = code


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a generation. `tool_calls` and `logprobs` are as in `messages.Tokens`."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    tool_calls: list[dict[str, Any]] | None = None
    logprobs: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: str = ""
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    name: str

    async def health(self) -> Health: ...

    async def models(self) -> list[ModelAd]: ...

    async def capacity(self) -> int | None:
        """How many requests the engine runs at once; the node never takes more. None: the
        engine does not say, and the node learns it from the engine's latency."""
        ...

    def chat(self, body: dict[str, Any]) -> AsyncIterator[Chunk]: ...

    def complete(self, body: dict[str, Any]) -> AsyncIterator[Chunk]: ...

    async def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        """OpenAI embeddings response body (`data`, `model`, `usage`)."""
        ...

    async def count_tokens(self, text: str) -> int | None:
        """The engine's own token count of `text`, for an engine that streamed no usage; None
        when the engine cannot tell."""
        ...

    async def aclose(self) -> None: ...
