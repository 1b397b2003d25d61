"""The fleet as the API shows it (the list, one node with its recent jobs), and the socket
nodes connect to.

Every key may see the fleet; a node's earnings and the jobs other keys ran on it are the
admin's alone (a client sees its own jobs there).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from infernet.control.api import params
from infernet.control.api.deps import json, keyed, plane
from infernet.control.api.jobs import listed
from infernet.control.api.money import RATE_UNIT
from infernet.control.errors import InvalidRequest, NotFound
from infernet.control.money import pricing
from infernet.control.money.pricing import PriceTable
from infernet.control.nodes.sessions import CONNECT_PATH, NodeConn
from infernet.control.stats import vendor_of
from infernet.control.store import KeyRecord
from infernet.hardware.tiers import EXPECTED_TPS
from infernet.protocol import receipts

if TYPE_CHECKING:
    from infernet.control.plane import ControlPlane

RECENT_JOBS = 20


def speed_verdict(measured: float, expected: tuple[float, float]) -> str:
    """Measured tokens/s against the tier's range from the hardware chapter."""
    if not measured:
        return "unmeasured"
    low, high = expected
    return "below" if measured < low else "above" if measured > high else "within"


def earnings_view(e: dict[str, int] | None) -> dict[str, Any]:
    e = e or {"earned": 0, "unpaid": 0, "paid": 0, "receipts": 0}
    return {"unit": receipts.UNIT, **e, **{f"{k}_usdc": receipts.usdc(v) for k, v in e.items() if k != "receipts"}}


def node_view(cp: ControlPlane, row: dict[str, Any], conn: NodeConn | None, table: PriceTable, now: float) -> dict[str, Any]:
    """`conn`: the node's socket, when this replica holds it. A node online at another
    replica is online too (the shared fleet view says so); what only its own replica
    knows (its socket's times, the speed it reports) is left out."""
    view = _view(cp, row, conn, table, now)
    if conn is None and (info := cp.placement.infos.get(row["id"])) is not None:
        rates = pricing.node_rates(table, row["tier"], info.price)
        view |= {
            "models": sorted(m.name for m in info.models), "capacity": info.capacity, "active": info.active,
            "status": "online", "replica": info.replica, "price": {"input": rates.input, "output": rates.output, "unit": RATE_UNIT},
        }
    return view


def _view(cp: ControlPlane, row: dict[str, Any], conn: NodeConn | None, table: PriceTable, now: float) -> dict[str, Any]:
    rates = pricing.node_rates(table, row["tier"], conn.hello.price if conn else None)
    rec = cp.health.reputation.of(row["id"], row["tier"])
    expected = EXPECTED_TPS.get(row["tier"], EXPECTED_TPS["cpu"])
    hardware = row["hardware"] or {}
    return {
        "id": row["id"], "name": row["name"], "backend": row["backend"], "tier": row["tier"],
        # What the node offers now: an offline node offers nothing; `last_models` keeps
        # what it advertised last, for the operator.
        "models": sorted(conn.models) if conn else [], "last_models": [m["name"] for m in row["models"]],
        "capacity": conn.capacity if conn else row["capacity"],
        "active": len(conn.active) if conn else 0, "status": "online" if conn else "offline",
        "tokens_per_s": conn.tokens_per_s if conn else 0.0,  # as the node reports it; `measured` is ours
        "hardware": hardware, "vendor": vendor_of(hardware),
        "last_seen": conn.seen_at() if conn else row["last_seen"], "first_seen": row["first_seen"],
        "connected_at": conn.connected_at if conn else None, "uptime_s": round(now - conn.connected_at, 1) if conn else None,
        "price": {"input": rates.input, "output": rates.output, "unit": RATE_UNIT},
        "reputation": round(rec.score(time.monotonic()), 4),
        "measured": {"tokens_per_s": round(rec.tokens_per_s, 2), "ttft_ms": round(rec.ttft_ms, 1)},
        "expected_tps": {"low": expected[0], "high": expected[1]},
        "speed": speed_verdict(rec.tokens_per_s, expected),
        "replica": cp.bus.replica if conn else None,
    }



async def list_nodes(request: Request, key: KeyRecord) -> Response:
    cp = plane(request)
    online = cp.sessions.nodes
    table = await cp.billing.table()
    earnings = await cp.history.node_earnings() if key.is_admin else None
    await cp.sessions.registry.flush()
    now = time.time()
    data = []
    for row in await cp.store.nodes.list():
        item = node_view(cp, row, online.get(row["id"]), table, now)
        if earnings is not None:
            item["earnings"] = earnings_view(earnings.get(row["id"]))
        data.append(item)
    return json({"object": "list", "data": data})


async def get_node(request: Request, key: KeyRecord) -> Response:
    cp = plane(request)
    node_id = request.path_params["node_id"]
    if len(node_id) > 64 or not params.NODE_ID.fullmatch(node_id):
        raise InvalidRequest("A node id is its public key: 64 hex characters.", param="node_id")
    await cp.sessions.registry.flush()
    row = await cp.store.nodes.get(node_id)
    if row is None:
        raise NotFound(f"No node `{node_id}`.", code="node_not_found")
    limit = params.integer(request, "jobs", RECENT_JOBS, 0, 200)
    item = node_view(cp, row, cp.sessions.nodes.get(node_id), await cp.billing.table(), time.time())
    if key.is_admin:
        item["earnings"] = earnings_view(await cp.billing.ledger.node_view(node_id))
    item["recent_jobs"] = await listed(cp, None if key.is_admin else key.id, limit, node_id=node_id) if limit else []
    return json(item)


async def node_socket(ws: WebSocket) -> None:
    await ws.app.state.cp.sessions.serve(ws)


routes = [
    Route("/api/v1/nodes", keyed(list_nodes)),
    Route("/api/v1/nodes/{node_id}", keyed(get_node)),
    WebSocketRoute(CONNECT_PATH, node_socket),
]
