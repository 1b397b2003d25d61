"""The fleet as the API shows it, and the socket nodes connect to."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from infernet.control.api.deps import json, keyed, plane
from infernet.control.api.money import RATE_UNIT
from infernet.control.money import pricing
from infernet.control.nodes.sessions import CONNECT_PATH
from infernet.control.store import KeyRecord


async def list_nodes(request: Request, key: KeyRecord) -> Response:
    cp = plane(request)
    online = cp.sessions.nodes
    table = await cp.billing.table()
    data = []
    for row in await cp.store.nodes.list():
        conn = online.get(row["id"])
        rates = pricing.node_rates(table, row["tier"], conn.hello.price if conn else None)
        last_models = [m["name"] for m in row["models"]]
        data.append({
            "id": row["id"], "name": row["name"], "backend": row["backend"], "tier": row["tier"],
            # What the node offers now: an offline node offers nothing; `last_models` keeps
            # what it advertised last, for the operator.
            "models": sorted(conn.models) if conn else [], "last_models": last_models,
            "capacity": conn.capacity if conn else row["capacity"],
            "active": len(conn.active) if conn else 0, "status": "online" if conn else "offline",
            "tokens_per_s": conn.tokens_per_s if conn else 0.0,
            "hardware": row["hardware"], "last_seen": conn.seen_at() if conn else row["last_seen"],
            "price": {"input": rates.input, "output": rates.output, "unit": RATE_UNIT},
        })
    return json({"object": "list", "data": data})


async def node_socket(ws: WebSocket) -> None:
    await ws.app.state.cp.sessions.serve(ws)


routes = [
    Route("/api/v1/nodes", keyed(list_nodes)),
    WebSocketRoute(CONNECT_PATH, node_socket),
]
