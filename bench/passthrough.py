"""The baseline: a thin Python streaming pass-through proxy (Starlette + httpx), one hop.

    python bench/passthrough.py PORT UPSTREAM_URL
"""

from __future__ import annotations

import sys

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

client = httpx.AsyncClient(base_url=sys.argv[2], timeout=60)


async def proxy(request: Request) -> StreamingResponse:
    req = client.build_request("POST", request.url.path, content=await request.body(), headers={"content-type": "application/json"})
    upstream = await client.send(req, stream=True)

    async def body():
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        finally:
            await upstream.aclose()

    return StreamingResponse(body(), status_code=upstream.status_code, media_type="text/event-stream")


app = Starlette(routes=[Route("/v1/chat/completions", proxy, methods=["POST"])])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
