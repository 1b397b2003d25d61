"""The dashboard's live feed: `GET /api/v1/events`, server-sent events.

One `snapshot` event every `Settings.dashboard_tick_s`: the fleet, the queue, the jobs alive
now and the chart points (`control/stats.py`). The first event carries the whole last hour;
each later one only the buckets from the previous event's newest on, which the page merges
by time. An admin key sees the network's jobs; any other key its own (with the network's
fleet and queue, which `/api/v1/nodes` shows it anyway). The key is checked again before
every event, so a revoked key's feed ends within a tick.

Built from memory only (sessions, placement, driver, stats): a watcher costs no query.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from infernet.control.api.deps import api_key, keyed, plane
from infernet.control.api.errors import error_body, type_of
from infernet.control.api.openai import SSE_HEADERS
from infernet.control.errors import InfernetError
from infernet.control.stats import BUCKET_S, tally, vendor_of
from infernet.control.store import KeyRecord

if TYPE_CHECKING:
    from infernet.control.plane import ControlPlane

MAX_LIVE = 100  # jobs listed per snapshot; `live_total` says how many there are


def snapshot(cp: ControlPlane, key: KeyRecord, since: float | None) -> dict[str, Any]:
    conns = list(cp.sessions.nodes.values())
    network = key.is_admin
    jobs = [j for j in cp.driver.jobs.values() if (j.purpose == "client" if network else j.key_id == key.id)]
    jobs.sort(key=lambda j: j.created, reverse=True)
    return {
        "t": time.time(),
        "scope": "network" if network else "key",
        "key": {"id": key.id, "name": key.name, "role": key.role},
        "fleet": {
            "online": len(conns),
            "by_tier": tally([c.hello.tier for c in conns]),
            "by_vendor": tally([vendor_of(c.hello.hardware) for c in conns]),
            "slots": sum(c.capacity for c in conns),
            "busy": sum(len(c.active) for c in conns),
        },
        "queue": len(cp.placement.queue),
        "queued_mine": cp.placement.waiting(key.id),
        "live_total": len(jobs),
        "live": [
            {"id": j.id, "status": str(j.status), "model": j.model, "node_id": j.node_id, "created_at": j.created}
            for j in jobs[:MAX_LIVE]
        ],
        "ended": cp.stats.ended if network else cp.stats.ended_by_key.get(key.id, 0),
        "bucket_s": BUCKET_S,
        "series": cp.stats.series(None if network else key.id, since),
    }


def _event(name: str, data: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + msgspec.json.encode(data) + b"\n\n"


async def live_feed(request: Request, key: KeyRecord) -> Response:
    cp = plane(request)

    async def feed() -> AsyncIterator[bytes]:
        yield b"retry: 3000\n\n"
        since: float | None = None
        current = key
        while True:
            snap = snapshot(cp, current, since)
            since = snap["series"][-1]["t"] if snap["series"] else None
            yield _event("snapshot", snap)
            await asyncio.sleep(cp.settings.dashboard_tick_s)
            try:
                current = await api_key(request)
            except InfernetError as exc:
                yield _event("error", error_body(exc.message, type_of(401), exc.code))
                return

    return StreamingResponse(feed(), media_type="text/event-stream", headers=SSE_HEADERS)


routes = [Route("/api/v1/events", keyed(live_feed))]
