"""Response headers clients rely on, added once for every route: `x-request-id` (the job's
id), for a key with a rate limit OpenAI's `x-ratelimit-*-requests`, and for an answer
`infernet-overhead-ms`: the time from the request's arrival until its response starts, less
the engine's own time (to its first output, for a stream).

Routes leave what they know in the request's state (`job_id`, `rate`, `engine_s`); this
pure ASGI middleware writes it into the response head as it goes out, so the relay's body
chunks pass through untouched.
"""

from __future__ import annotations

import math
import time
from typing import Any

from starlette.requests import Request

from infernet.control.store.rates import RateCount


def overhead_s(t0: float, engine_s: float) -> float:
    """Seconds spent in infernet on a request that arrived at `t0` (perf_counter), so far,
    outside the engine."""
    return max(0.0, time.perf_counter() - t0 - engine_s)


def note_job(request: Request, job_id: str | None, rate: RateCount | None) -> None:
    """What the response's headers will say of this request."""
    if job_id is not None:
        request.state.job_id = job_id
    if rate is not None:
        request.state.rate = rate


def _head(state: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    out = []
    engine_s = state.get("engine_s")
    if engine_s is not None:
        out.append((b"infernet-overhead-ms", f"{overhead_s(state['t0'], engine_s) * 1000:.2f}".encode()))
    job_id = state.get("job_id")
    if job_id:
        out.append((b"x-request-id", job_id.encode()))
    rate: RateCount | None = state.get("rate")
    if rate is not None:
        out += [
            (b"x-ratelimit-limit-requests", str(rate.limit).encode()),
            (b"x-ratelimit-remaining-requests", str(rate.remaining).encode()),
            (b"x-ratelimit-reset-requests", f"{math.ceil(rate.wait if rate.wait is not None else rate.reset_s)}s".encode()),
        ]
    return out


class RequestHeaders:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = scope.setdefault("state", {})
        state["t0"] = time.perf_counter()

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                extra = _head(state)
                if extra:
                    message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, sending)
