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


def chat_logprobs(entries: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    return {"content": entries, "refusal": None} if entries else None


def completion_logprobs(entries: list[dict[str, Any]] | None, offset: int = 0) -> dict[str, Any] | None:
    """Chat-shaped logprob entries in the legacy completions shape (`text_offset` counts
    characters from `offset`, where this piece starts in the answer)."""
    if not entries:
        return None
    tokens, offsets = [], []
    for e in entries:
        offsets.append(offset)
        tokens.append(e["token"])
        offset += len(e["token"])
    return {
        "tokens": tokens,
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [{t["token"]: t["logprob"] for t in e.get("top_logprobs") or ()} for e in entries],
        "text_offset": offsets,
    }


def chat_message(job: LiveJob) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": job.content, "refusal": None}
    if job.calls:
        message["tool_calls"] = job.calls
    return message


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
                "message": chat_message(job),
                "logprobs": chat_logprobs(job.logprobs),
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
        "choices": [{"index": 0, "text": job.output, "logprobs": completion_logprobs(job.logprobs), "finish_reason": job.state.finish_reason}],
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
        # The hot path, a chunk of plain text, is a template with the text spliced in: one
        # string encode per chunk instead of a dict built and encoded.
        head = _enc.encode({**self._base, "choices": [{"index": 0}]})
        cut = head.rindex(b"}]}")
        self._head = b"data: " + head[:cut] + (b',"delta":{"content":' if self.chat else b',"text":')
        self._tail = (b'},' if self.chat else b',') + b'"logprobs":null,"finish_reason":null' + head[cut:] + b"\n\n"
        self._role = True
        self._offset = 0  # characters of text sent: a completion's logprob text_offset
        self._opened: set[int] = set()  # tool calls whose first delta went out

    def _chunk(self, text: str | None, finish: str | None, role: bool = False, calls: list[dict[str, Any]] | None = None, logprobs: list[dict[str, Any]] | None = None) -> bytes:
        if self.chat:
            delta: dict[str, Any] = {}
            if role:
                delta["role"] = "assistant"
            if text is not None and (text or not calls):
                delta["content"] = text
            if calls:
                delta["tool_calls"] = calls
            choice = {"index": 0, "delta": delta, "logprobs": chat_logprobs(logprobs), "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text or "", "logprobs": completion_logprobs(logprobs, self._offset), "finish_reason": finish}
            self._offset += len(text or "")
        return sse({**self._base, "choices": [choice]})

    def text(self, text: str) -> bytes:
        # The role rides on the first chunk, which carries text: nothing reaches the client
        # before the answer does (so a failed first attempt can still be retried unseen).
        if self._role:
            self._role = False
            return self._chunk(text, None, role=self.chat)
        self._offset += len(text)
        return self._head + _enc.encode(text) + self._tail

    def token(self, data: dict[str, Any]) -> bytes:
        """A token event of the job's log: plain text, or with tool-call deltas and logprobs."""
        if len(data) == 1:
            return self.text(data["text"])
        first, self._role = self._role, False
        calls = [self._call_delta(d) for d in data.get("tool_calls") or ()]
        return self._chunk(data["text"], None, role=first and self.chat, calls=calls or None, logprobs=data.get("logprobs"))

    def _call_delta(self, d: dict[str, Any]) -> dict[str, Any]:
        """OpenAI's streamed tool-call delta: the first of a call carries its id, type and
        name (arguments may start there); later ones argument pieces, by `index`."""
        index = d.get("index", 0)
        fn = d.get("function") or {}
        if index in self._opened:
            return {"index": index, "function": {"arguments": str(fn.get("arguments") or "")}}
        self._opened.add(index)
        call = self.job.calls[index] if index < len(self.job.calls) else {"id": d.get("id"), "function": {"name": fn.get("name")}}
        return {"index": index, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"], "arguments": str(fn.get("arguments") or "")}}

    def done(self, finish_reason: str | None, usage: dict[str, int] | None) -> bytes:
        first, self._role = self._role, False
        out = self._chunk(None if self.chat else "", finish_reason or "stop", role=first and self.chat)
        if self.include_usage:
            out += sse({**self._base, "choices": [], "usage": usage})
        return out + SSE_DONE
