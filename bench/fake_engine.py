"""An instant OpenAI-compatible engine for relay benchmarks: streams N chunks, then usage
(or answers the same text at once, when the request does not stream).

    python bench/fake_engine.py PORT [CHUNKS]
"""

from __future__ import annotations

import json
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

CHUNKS = int(sys.argv[2]) if len(sys.argv) > 2 else 64


async def models(request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [{"id": "bench-model", "object": "model", "owned_by": "bench"}]})


async def chat(request: Request) -> StreamingResponse | JSONResponse:
    body = await request.json()
    if not body.get("stream"):
        text = "".join(f" tok{i}" for i in range(CHUNKS))
        return JSONResponse({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": CHUNKS, "total_tokens": 10 + CHUNKS},
        })
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}

    async def events():
        yield "data: " + json.dumps({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}) + "\n\n"
        for i in range(CHUNKS):
            yield "data: " + json.dumps({**base, "choices": [{"index": 0, "delta": {"content": f" tok{i}"}, "finish_reason": None}]}) + "\n\n"
        yield "data: " + json.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}) + "\n\n"
        yield "data: " + json.dumps({**base, "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": CHUNKS, "total_tokens": 10 + CHUNKS}}) + "\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


app = Starlette(routes=[Route("/v1/models", models), Route("/v1/chat/completions", chat, methods=["POST"])])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
