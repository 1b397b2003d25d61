"""Fake inference engines as real HTTP servers on loopback.

They speak each engine's wire format (framing, field names, usage, error bodies) as the
samples in tests/fixtures/backends/ show it; test_fakes_honest.py keeps them to it.
Tokens are whitespace words, so usage is exactly checkable.

Knobs a test sets on a fake (each applies to the next generation requests):
- `fail`: None, or one of
  "http500"      the engine answers 500 with its error body,
  "invalid_json" a garbage line after the first token,
  "truncate"     the stream stops after the first token, without a final event,
  "error_event"  the engine reports an error inside the stream,
  "drop"         the connection is cut after the first token.
- `delay_s`: pause before each token (to cancel mid-stream).
- `tool_call`: (name, arguments) the model "decides" to call when the request offers tools:
  streamed as each engine streams calls (OpenAI deltas with the arguments in two pieces;
  Ollama's whole call in one message), finish_reason / done_reason as each engine says it.
- Logprobs come back when asked (chat `logprobs`/`top_logprobs`, completions `logprobs`,
  Ollama's top-level `logprobs`/`top_logprobs`): token i has logprob -0.1*(i+1), and the
  alternatives `alt0`, `alt1`, ... below it.
`aborted` is set when a client closed a stream before it ended; `requests` logs bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.harness import _Server, free_port

FAIL_MODES = ("http500", "invalid_json", "truncate", "error_event", "drop")


class _Drop(Exception):
    """Raised inside a streaming body: uvicorn aborts the connection."""


@contextlib.asynccontextmanager
async def serve(app: Starlette, port: int | None = None) -> AsyncIterator[str]:
    """Run `app` on a loopback port (a free one by default) for the block; yields its URL."""
    port = port or free_port()
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        server.force_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)


@contextlib.contextmanager
def serve_in_thread(app: Starlette) -> Iterator[str]:
    """`serve` on its own thread and event loop, for synchronous callers (the CLI)."""
    import threading

    port = free_port()
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the fake engine did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)


def _words(text: str) -> list[str]:
    return text.split()


def _prompt_words(body: dict[str, Any]) -> int:
    if "messages" in body:
        return sum(len(_words(str(m.get("content") or ""))) for m in body["messages"])
    prompt = body.get("prompt", "")
    return len(_words(prompt if isinstance(prompt, str) else " ".join(map(str, prompt))))


@dataclass
class _Base:
    reply: str = "Hello there !"
    tool_call: tuple[str, dict[str, Any]] | None = None
    fail: str | None = None
    delay_s: float = 0.0
    requests: list[tuple[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.aborted = asyncio.Event()
        self.completed_streams = 0

    def answer(self, limit: int | None) -> tuple[list[str], str]:
        words = _words(self.reply)
        if limit and len(words) > limit:
            return words[:limit], "length"
        return words, "stop"

    def calls(self, body: dict[str, Any]) -> tuple[str, str] | None:
        """The call to make: (name, arguments JSON) when tools are offered and not refused."""
        if self.tool_call is None or not body.get("tools") or body.get("tool_choice") == "none":
            return None
        return self.tool_call[0], json.dumps(self.tool_call[1])

    @staticmethod
    def logprob(token: str, i: int, top: int) -> dict[str, Any]:
        lp = -0.1 * (i + 1)
        alts = [{"token": token, "logprob": lp, "bytes": list(token.encode())}]
        alts += [{"token": f"alt{k}", "logprob": lp - 1 - k, "bytes": list(f"alt{k}".encode())} for k in range(top - 1)]
        return {"token": token, "logprob": lp, "bytes": list(token.encode()), "top_logprobs": alts[:top]}

    def pieces(self, words: list[str]) -> list[str]:
        return [w if i == 0 else " " + w for i, w in enumerate(words)]

    async def _guarded(self, lines: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Marks `aborted` when the client goes away before the stream's end."""
        finished = False
        try:
            async for line in lines:
                yield line
            finished = True
            self.completed_streams += 1
        finally:
            if not finished:
                self.aborted.set()


# -- Ollama -----------------------------------------------------------------------------


@dataclass
class OllamaModel:
    size: int = 2019393189
    context_length: int = 131072
    family: str = "llama"
    capabilities: tuple[str, ...] = ("completion", "tools")
    parameter_size: str = "3.2B"
    quantization: str = "Q4_K_M"

    @property
    def digest(self) -> str:
        return f"{abs(hash((self.size, self.family))):064x}"[:64]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())


@dataclass
class FakeOllama(_Base):
    """Ollama's native API: NDJSON streams, `{"error": "..."}` bodies."""

    models: dict[str, OllamaModel] = field(default_factory=lambda: {"llama3.2:latest": OllamaModel()})
    registry: dict[str, OllamaModel] = field(default_factory=dict)  # what /api/pull can fetch
    version: str = "0.5.7"
    pull_chunks: int = 4

    def _find(self, name: str) -> str | None:
        full = name if ":" in name else name + ":latest"
        return full if full in self.models else None

    def _details(self, m: OllamaModel) -> dict[str, Any]:
        return {"parent_model": "", "format": "gguf", "family": m.family, "families": [m.family], "parameter_size": m.parameter_size, "quantization_level": m.quantization}

    @staticmethod
    def _error(status: int, message: str) -> Response:
        return JSONResponse({"error": message}, status_code=status)

    def _not_found(self, name: str) -> Response:
        return self._error(404, f'model "{name}" not found, try pulling it first')

    async def _body(self, request: Request, path: str) -> dict[str, Any]:
        body = json.loads(await request.body() or b"{}")
        self.requests.append((path, body))
        return body

    @property
    def app(self) -> Starlette:
        async def version(request: Request) -> Response:
            return JSONResponse({"version": self.version})

        async def tags(request: Request) -> Response:
            return JSONResponse({"models": [
                {"name": n, "model": n, "modified_at": "2024-10-01T10:00:00.123456-07:00", "size": m.size, "digest": m.digest, "details": self._details(m)}
                for n, m in self.models.items()
            ]})

        async def show(request: Request) -> Response:
            body = await self._body(request, "/api/show")
            name = self._find(body.get("model") or body.get("name") or "")
            if name is None:
                return self._error(404, f"model '{body.get('model')}' not found")
            m = self.models[name]
            return JSONResponse({
                "license": "", "modelfile": f"FROM {name}\n", "parameters": "", "template": "{{ .Prompt }}",
                "details": self._details(m),
                "model_info": {"general.architecture": m.family, "general.parameter_count": 3212749888, f"{m.family}.context_length": m.context_length, f"{m.family}.embedding_length": 3072},
                "capabilities": list(m.capabilities), "modified_at": "2024-10-01T10:00:00.123456-07:00",
            })

        async def ps(request: Request) -> Response:
            return JSONResponse({"models": [
                {"name": n, "model": n, "size": m.size, "digest": m.digest, "details": self._details(m), "expires_at": "2024-10-01T10:05:00.123456-07:00", "size_vram": m.size, "context_length": 8192}
                for n, m in list(self.models.items())[:1]
            ]})

        async def generate_like(request: Request, path: str) -> Response:
            body = await self._body(request, path)
            name = self._find(body.get("model", ""))
            if name is None:
                return self._not_found(body.get("model", ""))
            if self.fail == "http500":
                return self._error(500, "llama runner process has terminated: exit status 2")
            limit = (body.get("options") or {}).get("num_predict")
            words, finish = self.answer(limit)
            chat = path == "/api/chat"
            call = self.calls(body) if chat else None
            top = int(body.get("top_logprobs") or 1) if body.get("logprobs") else 0

            def line(text: str, done: bool = False, **extra: Any) -> bytes:
                event: dict[str, Any] = {"model": name, "created_at": _now()}
                if chat:
                    event["message"] = {"role": "assistant", "content": text}
                else:
                    event["response"] = text
                event["done"] = done
                event.update(extra)
                return json.dumps(event, separators=(",", ":")).encode() + b"\n"

            async def lines() -> AsyncIterator[bytes]:
                if call is not None:  # Ollama 0.12: the whole call in one message, then done
                    event = {"model": name, "created_at": _now(), "message": {"role": "assistant", "content": "", "tool_calls": [
                        {"id": "call_k1w2x3y4", "function": {"index": 0, "name": call[0], "arguments": json.loads(call[1])}}]}, "done": False}
                    yield json.dumps(event, separators=(",", ":")).encode() + b"\n"
                    yield line("", True, done_reason="stop", total_duration=4353619900, load_duration=63915300, prompt_eval_count=_prompt_words(body), prompt_eval_duration=246847000, eval_count=len(_words(call[1])) + 1, eval_duration=4032296000)
                    return
                for i, piece in enumerate(self.pieces(words)):
                    if self.delay_s:
                        await asyncio.sleep(self.delay_s)
                    yield line(piece, **({"logprobs": [self.logprob(piece, i, top)]} if top else {}))
                    if i == 0 and self.fail == "invalid_json":
                        yield b'{"model":"' + name.encode() + b'","message":{"content":\n'
                    if i == 0 and self.fail == "truncate":
                        return
                    if i == 0 and self.fail == "error_event":
                        yield b'{"error":"an error was encountered while running the model: unexpected EOF"}\n'
                        return
                    if i == 0 and self.fail == "drop":
                        raise _Drop
                final = {"done_reason": finish, "total_duration": 4353619900, "load_duration": 63915300, "prompt_eval_count": _prompt_words(body), "prompt_eval_duration": 246847000, "eval_count": len(words), "eval_duration": 4032296000}
                if not chat:
                    final = {"done_reason": finish, "context": [1, 2, 3], **{k: v for k, v in final.items() if k != "done_reason"}}
                yield line("", True, **final)

            return StreamingResponse(self._guarded(lines()), media_type="application/x-ndjson")

        async def chat(request: Request) -> Response:
            return await generate_like(request, "/api/chat")

        async def generate(request: Request) -> Response:
            return await generate_like(request, "/api/generate")

        async def embed(request: Request) -> Response:
            body = await self._body(request, "/api/embed")
            name = self._find(body.get("model", ""))
            if name is None:
                return self._not_found(body.get("model", ""))
            if self.fail == "http500":
                return self._error(500, "embedding runner failed")
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            vectors = [[float(len(t)), 1.0, 0.5, -0.25] for t in inputs]
            return JSONResponse({"model": name, "embeddings": vectors, "total_duration": 14143917, "load_duration": 1019500, "prompt_eval_count": sum(len(_words(t)) for t in inputs)})

        async def pull(request: Request) -> Response:
            body = await self._body(request, "/api/pull")
            name = body.get("model") or body.get("name") or ""
            full = name if ":" in name else name + ":latest"
            spec = self.registry.get(full)

            async def lines() -> AsyncIterator[bytes]:
                yield b'{"status":"pulling manifest"}\n'
                if spec is None:
                    yield b'{"error":"pull model manifest: file does not exist"}\n'
                    return
                digest = "sha256:" + spec.digest
                short = spec.digest[:12]
                for i in range(self.pull_chunks + 1):
                    if self.delay_s:
                        await asyncio.sleep(self.delay_s)
                    event: dict[str, Any] = {"status": f"pulling {short}", "digest": digest, "total": spec.size}
                    if i:
                        event["completed"] = spec.size * i // self.pull_chunks
                    yield json.dumps(event, separators=(",", ":")).encode() + b"\n"
                for status in ("verifying sha256 digest", "writing manifest"):
                    yield json.dumps({"status": status}).encode() + b"\n"
                self.models[full] = spec
                yield b'{"status":"success"}\n'

            return StreamingResponse(self._guarded(lines()), media_type="application/x-ndjson")

        async def delete(request: Request) -> Response:
            body = await self._body(request, "/api/delete")
            name = self._find(body.get("model") or body.get("name") or "")
            if name is None:
                return self._error(404, f"model '{body.get('model')}' not found")
            del self.models[name]
            return Response(status_code=200)

        async def root(request: Request) -> Response:
            return Response("Ollama is running", media_type="text/plain")

        return Starlette(routes=[
            Route("/", root), Route("/api/version", version), Route("/api/tags", tags), Route("/api/ps", ps),
            Route("/api/show", show, methods=["POST"]), Route("/api/chat", chat, methods=["POST"]),
            Route("/api/generate", generate, methods=["POST"]), Route("/api/embed", embed, methods=["POST"]),
            Route("/api/pull", pull, methods=["POST"]), Route("/api/delete", delete, methods=["DELETE"]),
        ])


# -- OpenAI-compatible engines ----------------------------------------------------------


@dataclass
class FakeOpenAIEngine(_Base):
    """vLLM, SGLang or llama.cpp's llama-server, each with its own native endpoints,
    usage framing and error dialect."""

    flavour: str = "vllm"  # vllm | sglang | llamacpp
    model: str = "meta-llama/Llama-3.1-8B-Instruct"
    context_length: int = 8192
    slots: int = 4  # llama.cpp total_slots; SGLang max_running_requests
    loading: bool = False  # llama.cpp answers 503 while it loads
    healthy: bool = True
    version: str = "0.6.3.post1"  # vLLM's /version
    vision: bool = False  # SGLang has_image_understanding; llama.cpp props modalities.vision

    def _error(self, status: int, message: str, typ: str = "BadRequestError") -> Response:
        if self.flavour == "sglang":
            body: dict[str, Any] = {"object": "error", "message": message, "type": typ, "param": None, "code": status}
        elif self.flavour == "llamacpp":
            body = {"error": {"code": status, "message": message, "type": {404: "not_found_error", 503: "unavailable_error", 500: "server_error"}.get(status, "invalid_request_error")}}
        else:
            body = {"error": {"message": message, "type": typ, "param": None, "code": status}}
        return JSONResponse(body, status_code=status)

    def _model_entry(self) -> dict[str, Any]:
        if self.flavour == "llamacpp":
            return {"id": self.model, "object": "model", "created": 1727000000, "owned_by": "llamacpp", "meta": {"vocab_type": 2, "n_vocab": 49152, "n_ctx_train": 8192, "n_embd": 576, "n_params": 134515008, "size": 98263808}}
        entry = {"id": self.model, "object": "model", "created": 1727000000, "owned_by": self.flavour, "root": self.model, "max_model_len": self.context_length}
        if self.flavour == "vllm":
            entry.update(parent=None, permission=[{"id": "modelperm-1", "object": "model_permission", "created": 1727000000, "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True, "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False, "organization": "*", "group": None, "is_blocking": False}])
        return entry

    @property
    def app(self) -> Starlette:
        def loading_guard() -> Response | None:
            if self.flavour == "llamacpp" and self.loading:
                return self._error(503, "Loading model")
            return None

        async def health(request: Request) -> Response:
            if (g := loading_guard()) is not None:
                return g
            if not self.healthy:
                return Response(status_code=503)
            return JSONResponse({"status": "ok"}) if self.flavour == "llamacpp" else Response(status_code=200)

        async def models(request: Request) -> Response:
            return JSONResponse({"object": "list", "data": [self._model_entry()]})

        async def version(request: Request) -> Response:
            return JSONResponse({"version": self.version})

        async def model_info(request: Request) -> Response:
            return JSONResponse({"model_path": self.model, "tokenizer_path": self.model, "is_generation": True, "preferred_sampling_params": None, "weight_version": "default", "has_image_understanding": self.vision, "has_audio_understanding": False})

        async def server_info(request: Request) -> Response:
            return JSONResponse({"model_path": self.model, "tokenizer_path": self.model, "host": "127.0.0.1", "port": 30000, "context_length": None, "max_running_requests": self.slots, "max_total_num_tokens": None, "chunked_prefill_size": 8192, "max_prefill_tokens": 16384, "mem_fraction_static": 0.88, "tp_size": 1, "dp_size": 1, "served_model_name": self.model, "internal_states": [{"attention_backend": "flashinfer", "max_total_num_tokens": 1034712, "max_req_input_len": self.context_length - 6, "last_gen_throughput": 0.0}], "version": "0.4.9"})

        async def props(request: Request) -> Response:
            if (g := loading_guard()) is not None:
                return g
            return JSONResponse({"default_generation_settings": {"id": 0, "id_task": -1, "n_ctx": self.context_length, "speculative": False, "is_processing": False, "params": {"n_predict": -1, "seed": 4294967295, "temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "stream": True}}, "total_slots": self.slots, "model_path": f"models/{self.model}", "chat_template": "", "build_info": "b4600-1a2b3c4d", "modalities": {"vision": self.vision, "audio": False}})

        async def slots(request: Request) -> Response:
            if (g := loading_guard()) is not None:
                return g
            return JSONResponse([{"id": i, "id_task": -1, "n_ctx": self.context_length, "speculative": False, "is_processing": False} for i in range(self.slots)])

        async def generate(request: Request) -> Response:
            chat = request.url.path.endswith("/chat/completions")
            body = json.loads(await request.body())
            self.requests.append((request.url.path, body))
            if (g := loading_guard()) is not None:
                return g
            if body.get("model") != self.model and self.flavour != "llamacpp":  # llama-server serves whatever is loaded
                return self._error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
            if self.fail == "http500":
                return self._error(500, "Internal server error: CUDA error: an illegal memory access was encountered", "InternalServerError")
            words, finish = self.answer(body.get("max_completion_tokens") or body.get("max_tokens"))
            prompt = _prompt_words(body)
            call = self.calls(body) if chat else None
            want = body.get("logprobs")
            top = (int(body.get("top_logprobs") or 0) if chat else int(want or 0)) if want not in (None, False) else None
            opts = body.get("stream_options") or {}
            include, continuous = bool(opts.get("include_usage")), bool(opts.get("continuous_usage_stats"))
            created, cid = 1727000000, "chatcmpl-fake"

            def usage(n: int) -> dict[str, Any]:
                u = {"prompt_tokens": prompt, "total_tokens": prompt + n, "completion_tokens": n}
                if self.flavour == "sglang":
                    u["prompt_tokens_details"] = None
                return u

            def event(choices: list[dict[str, Any]], n: int | None, final: bool = False) -> bytes:
                if self.flavour == "llamacpp":
                    e: dict[str, Any] = {"choices": choices, "created": created, "id": cid, "model": "gpt-3.5-turbo", "system_fingerprint": "b4600-1a2b3c4d", "object": "chat.completion.chunk" if chat else "text_completion"}
                    if final:
                        e["usage"] = usage(n or 0)
                        e["timings"] = {"prompt_n": prompt, "prompt_ms": 30.1, "prompt_per_token_ms": 2.5, "prompt_per_second": 398.6, "predicted_n": n, "predicted_ms": 40.2, "predicted_per_token_ms": 13.4, "predicted_per_second": 74.6}
                else:
                    e = {"id": cid, "object": "chat.completion.chunk" if chat else "text_completion", "created": created, "model": self.model, "choices": choices}
                    if self.flavour == "vllm":
                        if final or (include and continuous):
                            e["usage"] = usage(n or 0)
                    else:  # SGLang: usage null on every chunk, the numbers on the last
                        e["usage"] = usage(n or 0) if final or (include and continuous) else None
                return b"data: " + json.dumps(e, separators=(",", ":")).encode() + b"\n\n"

            def choice(text: str | None, finish_reason: str | None, first: bool = False, index: int = 0) -> dict[str, Any]:
                if not chat:
                    lp = None
                    if top is not None and text:
                        e = self.logprob(text, index, max(top, 1))
                        lp = {"text_offset": [0], "token_logprobs": [e["logprob"]], "tokens": [text], "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"]}]}
                    return {"index": 0, "text": text or "", "logprobs": lp, "finish_reason": finish_reason}
                if self.flavour == "sglang":  # every field on every delta, null when unused
                    delta: dict[str, Any] = {"role": "assistant" if first else None, "content": text, "reasoning_content": None, "tool_calls": None}
                elif self.flavour == "llamacpp":  # role and a null content first, then content, then {}
                    delta = {"role": "assistant", "content": None} if first else ({"content": text} if text is not None else {})
                else:
                    delta = {"role": "assistant", "content": text} if first else {"content": text}
                c: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish_reason}
                if self.flavour != "llamacpp":
                    c["logprobs"] = None
                if top is not None and text:
                    c["logprobs"] = {"content": [self.logprob(text, index, max(top, 1))]}
                if self.flavour == "sglang":
                    c["matched_stop"] = 151645 if finish_reason == "stop" else None
                if self.flavour == "vllm" and finish_reason:
                    c["stop_reason"] = None
                return c

            def call_choice(delta_call: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
                if self.flavour == "sglang":  # every field on every delta, null when unused
                    delta: dict[str, Any] = {"role": None, "content": None, "reasoning_content": None, "tool_calls": [delta_call]}
                else:
                    delta = {"tool_calls": [delta_call]}
                c: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish_reason}
                if self.flavour != "llamacpp":
                    c["logprobs"] = None
                return c

            async def call_lines(name: str, args: str) -> AsyncIterator[bytes]:
                # vLLM: the first delta has the id, type and name and no arguments; SGLang sends
                # every field (name null after the first); llama-server an empty arguments string.
                first: dict[str, Any] = {"id": "chatcmpl-tool-5d1f3c", "type": "function", "index": 0, "function": {"name": name}}
                if self.flavour != "vllm":
                    first["function"]["arguments"] = ""
                yield event([call_choice(first)], 1)
                half = len(args) // 2
                for n, part in enumerate((args[:half], args[half:])):
                    more: dict[str, Any] = {"index": 0, "function": {"arguments": part}}
                    if self.flavour == "sglang":
                        more = {"id": None, "type": "function", "index": 0, "function": {"name": None, "arguments": part}}
                    yield event([call_choice(more)], n + 2)
                last = {
                    "vllm": {"index": 0, "delta": {"content": ""}, "logprobs": None, "finish_reason": "tool_calls", "stop_reason": None},
                    "sglang": {"index": 0, "delta": {"role": None, "content": None, "reasoning_content": None, "tool_calls": None}, "logprobs": None, "finish_reason": "tool_calls", "matched_stop": None},
                    "llamacpp": {"index": 0, "delta": {}, "finish_reason": "tool_calls"},
                }[self.flavour]
                yield event([last], 3)
                if include:
                    yield event([], 3, final=True)
                yield b"data: [DONE]\n\n"

            async def lines() -> AsyncIterator[bytes]:
                pieces = self.pieces(words)
                if self.flavour != "sglang":
                    yield event([choice("" if self.flavour == "vllm" else None, None, first=True)], 0)
                if call is not None:
                    async for raw in call_lines(*call):
                        yield raw
                    return
                for i, piece in enumerate(pieces):
                    if self.delay_s:
                        await asyncio.sleep(self.delay_s)
                    last = i == len(pieces) - 1 and self.flavour != "llamacpp"
                    yield event([choice(piece, finish if last else None, first=(i == 0 and self.flavour == "sglang"), index=i)], i + 1)
                    if i == 0 and self.fail == "invalid_json":
                        yield b'data: {"id":"chatcmpl-fake","choices":[{"delta":{"content":\n\n'
                    if i == 0 and self.fail == "truncate":
                        return
                    if i == 0 and self.fail == "error_event":
                        if self.flavour == "llamacpp":
                            yield b'error: {"code":500,"message":"slot unavailable","type":"server_error"}\n\n'
                        else:
                            err = json.loads(self._error(500, "engine error: out of KV cache", "InternalServerError").body)
                            yield b"data: " + json.dumps(err).encode() + b"\n\n"
                        return
                    if i == 0 and self.fail == "drop":
                        raise _Drop
                if self.flavour == "llamacpp":
                    yield event([choice(None, finish)], len(words))
                if include:
                    yield event([], len(words), final=True)
                yield b"data: [DONE]\n\n"

            return StreamingResponse(self._guarded(lines()), media_type="text/event-stream")

        async def embeddings(request: Request) -> Response:
            body = json.loads(await request.body())
            self.requests.append(("/v1/embeddings", body))
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            data = [{"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0, -0.5]} for i, t in enumerate(inputs)]
            tokens = sum(len(_words(t)) for t in inputs)
            return JSONResponse({"object": "list", "data": data, "model": self.model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

        async def tokenize(request: Request) -> Response:
            body = json.loads(await request.body())
            self.requests.append((request.url.path, body))
            if self.flavour == "vllm":  # vLLM: {"prompt"} -> count, max_model_len, tokens
                ids = list(range(len(_words(body["prompt"]))))
                return JSONResponse({"count": len(ids), "max_model_len": self.context_length, "tokens": ids, "token_strs": None})
            return JSONResponse({"tokens": list(range(len(_words(body["content"]))))})  # llama-server: {"content"} -> tokens

        routes = [
            Route("/health", health), Route("/v1/models", models),
            Route("/v1/chat/completions", generate, methods=["POST"]), Route("/v1/completions", generate, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
        ]
        if self.flavour in ("vllm", "llamacpp"):
            routes.append(Route("/tokenize", tokenize, methods=["POST"]))
        if self.flavour == "vllm":
            routes.append(Route("/version", version))
        elif self.flavour == "sglang":
            routes += [Route("/get_model_info", model_info), Route("/get_server_info", server_info)]
        elif self.flavour == "llamacpp":
            routes += [Route("/props", props), Route("/slots", slots)]
        return Starlette(routes=routes)
