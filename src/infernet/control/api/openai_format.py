"""OpenAI response shapes for chat, completions and their SSE chunks."""

from __future__ import annotations

from typing import Any

import msgspec

from infernet.control.dispatch.live import LiveJob

_enc = msgspec.json.Encoder()


def sse(data: Any) -> bytes:
    return b"data: " + _enc.encode(data) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def _usage(job: LiveJob) -> dict[str, int] | None:
    return job.usage


def chat_response(job: LiveJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "object": "chat.completion",
        "created": int(job.created),
        "model": job.model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": job.output, "refusal": None},
                "logprobs": None,
                "finish_reason": job.state.finish_reason,
            }
        ],
        "usage": _usage(job),
    }


def completion_response(job: LiveJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "object": "text_completion",
        "created": int(job.created),
        "model": job.model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "text": job.output, "logprobs": None, "finish_reason": job.state.finish_reason}],
        "usage": _usage(job),
    }


class ChunkWriter:
    """Builds the SSE chunks of one streamed chat or completion."""

    def __init__(self, job: LiveJob, include_usage: bool) -> None:
        self.job = job
        self.include_usage = include_usage
        self.chat = job.kind == "chat"
        self._base = {
            "id": job.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": int(job.created),
            "model": job.model,
            "system_fingerprint": None,
        }
        if include_usage:
            self._base["usage"] = None
        self._role = True

    def _chunk(self, text: str | None, finish: str | None, role: bool = False) -> bytes:
        if self.chat:
            delta: dict[str, Any] = {}
            if role:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        return sse({**self._base, "choices": [choice]})

    def text(self, text: str) -> bytes:
        # The role rides on the first chunk, which carries text: nothing reaches the client
        # before the answer does (so a failed first attempt can still be retried unseen).
        first, self._role = self._role, False
        return self._chunk(text, None, role=first and self.chat)

    def done(self, finish_reason: str | None, usage: dict[str, int] | None) -> bytes:
        first, self._role = self._role, False
        out = self._chunk(None if self.chat else "", finish_reason or "stop", role=first and self.chat)
        if self.include_usage:
            out += sse({**self._base, "choices": [], "usage": usage})
        return out + SSE_DONE
