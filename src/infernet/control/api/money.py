"""Money routes: the platform's key, prices, balances, receipts, the books, node payouts."""

from __future__ import annotations

import time
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from infernet.control import schemas
from infernet.control.api import params
from infernet.control.api.deps import admin, json, keyed, node_signed, plane
from infernet.control.api.jobs import settled_job
from infernet.control.api.keys import limits_view
from infernet.control.errors import Forbidden, InvalidRequest, NotFound
from infernet.control.money import pricing
from infernet.control.store import KeyRecord
from infernet.protocol import receipts

RATE_UNIT = "micro-USDC per million tokens"


class PayoutRequest(msgspec.Struct, kw_only=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1000


async def platform(request: Request) -> Response:
    billing = plane(request).billing
    table = await billing.table()
    return json({"pubkey": billing.platform.pubkey, "npub": billing.platform.npub, "chain": table.chain, "unit": receipts.UNIT})


async def get_pricing(request: Request, key: KeyRecord) -> Response:
    return json({"object": "pricing", "unit": RATE_UNIT, **pricing.encode_table(await plane(request).billing.table())})


async def put_pricing(request: Request, key: KeyRecord) -> Response:
    try:
        table = pricing.decode_table(await request.body())
    except ValueError as exc:
        raise InvalidRequest(f"Invalid price table: {exc}", param="pricing") from None
    await plane(request).billing.set_table(table)
    return json({"object": "pricing", "unit": RATE_UNIT, **pricing.encode_table(table)})


async def balance(request: Request, key: KeyRecord) -> Response:
    cp = plane(request)
    key_id = params.matching(request, "key_id", params.KEY_ID, "an API key id (key_...)") or key.id
    if key_id != key.id and not key.is_admin:
        raise Forbidden("Only an admin key may read another key's balance.")
    view = await cp.billing.ledger.client_view(key_id)
    limits = await cp.store.keys.limits(key_id)
    table = await cp.billing.table()
    return json({
        "object": "balance", "key_id": key_id, "unit": receipts.UNIT, **view,
        **{f"{k}_usdc": receipts.usdc(v) for k, v in view.items()},
        "min_balance_usdc": receipts.usdc(table.min_balance), **limits_view(limits),
    })


async def balance_history(request: Request, key: KeyRecord) -> Response:
    """A key's spend and balance per period over the last `hours` (hourly up to two days,
    daily beyond), and its open holds: the dashboard's money chart."""
    cp = plane(request)
    key_id = params.matching(request, "key_id", params.KEY_ID, "an API key id (key_...)") or key.id
    if key_id != key.id and not key.is_admin:
        raise Forbidden("Only an admin key may read another key's balance.")
    hours = params.integer(request, "hours", 24, 1, 720)
    period = 3600 if hours <= 48 else 86_400
    until = time.time()
    since = until - hours * 3600
    view = await cp.billing.ledger.client_view(key_id)
    return json({
        "object": "balance_history", "key_id": key_id, "unit": receipts.UNIT, "period_s": period, "since": since,
        **view, **{f"{k}_usdc": receipts.usdc(v) for k, v in view.items()},
        "spend": await cp.history.spend(key_id, since, until, period),
        "balance": await cp.history.balance(key_id, since, until, period),
        "holds": await cp.history.open_holds(key_id),
    })


async def job_receipt(request: Request, key: KeyRecord) -> Response:
    row = await settled_job(request, request.path_params["job_id"], key)
    doc = await plane(request).billing.ledger.receipt(row["id"])
    if doc is None:
        raise NotFound(f"Job `{row['id']}` has no receipt: it is {row['status']}, and only served work is receipted.", code="receipt_not_found")
    return json(doc)


async def ledger_check(request: Request, key: KeyRecord) -> Response:
    problems = await plane(request).billing.ledger.check()
    return json({"ok": not problems, "problems": problems})


async def node_payments(request: Request, pubkey: str, body: bytes) -> Response:
    try:
        limit = min(1000, max(0, int(request.query_params.get("receipts", "20"))))
    except ValueError:
        raise InvalidRequest("`receipts` must be a number.", param="receipts") from None
    ledger = plane(request).billing.ledger
    view = await ledger.node_view(pubkey)
    docs = await ledger.node_receipts(pubkey, limit=limit) if limit else []
    return json({"object": "payments", "node_pubkey": pubkey, "unit": receipts.UNIT, **view, **{f"{k}_usdc": receipts.usdc(v) for k, v in view.items() if k != "receipts"}, "data": docs})


async def node_payout(request: Request, pubkey: str, body: bytes) -> Response:
    billing = plane(request).billing
    data = schemas.parse(body, PayoutRequest) if body.strip() else PayoutRequest()
    table = await billing.table()
    ident = billing.platform
    doc = await billing.ledger.payout(pubkey, lambda rec: ident.sign(receipts.digest(rec)), chain=table.chain, platform_pubkey=ident.pubkey, limit=data.limit)
    if doc is None:
        raise NotFound("Nothing to claim: this node has no unpaid receipts.", code="nothing_to_claim")
    return json(doc, 201)


routes = [
    Route("/api/v1/platform", platform),
    Route("/api/v1/pricing", keyed(get_pricing), methods=["GET"]),
    Route("/api/v1/pricing", admin(put_pricing), methods=["PUT"]),
    Route("/api/v1/balance", keyed(balance)),
    Route("/api/v1/balance/history", keyed(balance_history)),
    Route("/api/v1/jobs/{job_id}/receipt", keyed(job_receipt)),
    Route("/api/v1/ledger/check", admin(ledger_check)),
    Route("/api/v1/node/payments", node_signed(node_payments)),
    Route("/api/v1/node/payouts", node_signed(node_payout), methods=["POST"]),
]
