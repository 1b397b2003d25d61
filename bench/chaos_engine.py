"""Fake OpenAI-compatible engines for the chaos runs, one per port, in one process.

    python -m bench.chaos_engine LOG PORT [PORT ...]

A prompt `chaos <nonce> <n>` is answered with `answer(nonce, n)`: n words derived from the
nonce, one chunk each, then the finish reason, honest usage and [DONE]; so a checker can
recompute every answer. Each port's mode is set with `POST /chaos/mode {"mode": ...}`:
- `normal`;
- `stall`: a request stops after 0 to 2 words and sends nothing more until it is dropped;
- `garbage`: a request goes wrong one way or another: invalid JSON, a non-text delta, a cut
  stream, an aborted finish, or a lie about usage (ten times the words it sent).
Every request is appended to LOG as one JSON line when it ends: the nonce, the port, the mode,
the text it sent and whether it sent all of it (`whole`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import sys
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

MODEL = "chaos-model"
WORD_DELAY_S = float(os.environ.get("CHAOS_WORD_DELAY_S", "0.002"))
GARBAGE = ("bad_json", "non_text", "cut", "abort", "overclaim")


def answer(nonce: str, n: int) -> str:
    """The text an honest engine sends for `chaos <nonce> <n>`."""
    return " ".join("w" + hashlib.sha256(f"{nonce}:{i}".encode()).hexdigest()[:6] for i in range(n))


def prompt(nonce: str, n: int) -> str:
    return f"chaos {nonce} {n}"


def parse_prompt(text: str) -> tuple[str, int] | None:
    parts = text.split()
    if len(parts) == 3 and parts[0] == "chaos" and parts[2].isdigit():
        return parts[1], int(parts[2])
    return None


def engine_app(port: int, log: Any) -> Starlette:
    state = {"mode": "normal"}
    rng = random.Random(port)

    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "chaos"}]})

    async def set_mode(request: Request) -> JSONResponse:
        state["mode"] = (await request.json())["mode"]
        return JSONResponse(state)

    async def chat(request: Request) -> StreamingResponse:
        body = await request.json()
        parsed = parse_prompt(body["messages"][-1]["content"])
        nonce, n = parsed if parsed else ("-", 3)
        words = answer(nonce, n).split()[: body.get("max_tokens") or n]
        mode = state["mode"]
        fault = rng.choice(GARBAGE) if mode == "garbage" else None
        stall_at = rng.randint(0, 2) if mode == "stall" else None
        base = {"id": "chatcmpl-chaos", "object": "chat.completion.chunk", "created": 0, "model": MODEL}

        def event(data: Any) -> str:
            return "data: " + (data if isinstance(data, str) else json.dumps(data)) + "\n\n"

        async def events():
            sent: list[str] = []
            whole = False
            try:
                yield event({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
                for i, w in enumerate(words):
                    if stall_at is not None and i == stall_at:
                        await asyncio.sleep(3600)
                    if fault == "bad_json" and i == len(words) // 2:
                        yield event('{"choices": [{"delta": {"content": ')
                        return
                    if fault == "non_text" and i == len(words) // 2:
                        yield event({**base, "choices": [{"index": 0, "delta": {"content": 42}, "finish_reason": None}]})
                    if fault == "cut" and i == len(words) // 2:
                        return
                    piece = w if i == 0 else " " + w
                    sent.append(piece)
                    yield event({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
                    if WORD_DELAY_S:
                        await asyncio.sleep(WORD_DELAY_S)
                finish = "abort" if fault == "abort" else "stop"
                yield event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
                completion = len(sent) * (10 if fault == "overclaim" else 1)
                yield event({**base, "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": completion, "total_tokens": 4 + completion}})
                yield event("[DONE]")
                whole = True
            finally:
                log.write(json.dumps({"nonce": nonce, "port": port, "mode": mode, "fault": fault, "text": "".join(sent), "whole": whole}) + "\n")
                log.flush()

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[
        Route("/v1/models", models), Route("/v1/chat/completions", chat, methods=["POST"]), Route("/chaos/mode", set_mode, methods=["POST"]),
    ])


async def main(log_path: str, ports: list[int]) -> None:
    with open(log_path, "a") as log:
        servers = [uvicorn.Server(uvicorn.Config(engine_app(p, log), host="127.0.0.1", port=p, log_level="error")) for p in ports]
        await asyncio.gather(*(s.serve() for s in servers))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], [int(p) for p in sys.argv[2:]]))
