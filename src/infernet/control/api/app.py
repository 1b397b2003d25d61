"""The control plane's ASGI app: every route, the lifespan, the limits and error handlers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from infernet import __version__
from infernet.control.api import (
    dashboard,
    errors,
    events,
    jobs,
    keys,
    money,
    nodes,
    ollama,
    openai,
    openapi,
    probe,
)
from infernet.control.api.deps import admin, json, plane
from infernet.control.api.headers import RequestHeaders
from infernet.control.api.limits import BodyLimit
from infernet.control.plane import ControlPlane
from infernet.control.store import KeyRecord


async def healthz(request: Request) -> Response:
    cp = plane(request)
    # 503 while draining: load balancers take the replica out before it goes.
    status = "draining" if cp.draining else "ok"
    return json({"status": status, "version": __version__, "nodes": len(cp.sessions.nodes)}, 503 if cp.draining else 200)


async def metrics(request: Request, key: KeyRecord) -> Response:
    return Response(plane(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def create_app(cp: ControlPlane, *, admin_key: str | None = None, admin_name: str = "admin") -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await cp.start(admin_key, admin_name)
        try:
            yield
        finally:
            await cp.aclose()

    routes = [
        Route("/healthz", healthz),
        Route("/metrics", admin(metrics)),
        *dashboard.routes, *events.routes, *openai.routes, *ollama.routes, *jobs.routes, *nodes.routes, *keys.routes, *money.routes, *probe.routes, *openapi.routes,
    ]
    middleware = [Middleware(RequestHeaders), Middleware(BodyLimit)]
    if cp.settings.cors_origins:  # off unless the operator lists origins
        middleware.insert(0, Middleware(
            CORSMiddleware, allow_origins=list(cp.settings.cors_origins), allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
            allow_headers=["authorization", "content-type", "idempotency-key", "last-event-id"],
            expose_headers=["x-request-id", "retry-after", "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"],
        ))
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=errors.HANDLERS, middleware=middleware)
    app.state.cp = cp
    return app
