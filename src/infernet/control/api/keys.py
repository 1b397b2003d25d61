"""Admin routes for client API keys: create, list, limits, revoke, credit."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from infernet.control import bounds, schemas
from infernet.control.api.deps import admin, json, plane
from infernet.control.errors import InvalidRequest, NotFound
from infernet.control.money.ledger import BalanceCap
from infernet.control.store import KeyLimits, KeyRecord
from infernet.protocol import receipts

Amount = Annotated[str, msgspec.Meta(max_length=40)] | Annotated[int, msgspec.Meta(ge=0, le=bounds.MAX_MICRO // receipts.MICRO)]
RateLimit = Annotated[int, msgspec.Meta(ge=1, le=bounds.MAX_RATE_LIMIT)]  # requests per minute


class KeyCreate(msgspec.Struct, kw_only=True):
    name: Annotated[str, msgspec.Meta(max_length=200)] = ""
    role: str = "client"
    rate_limit: RateLimit | None = None
    spend_limit: Amount | None = None  # USDC per rolling 24 h

    def __post_init__(self) -> None:
        if self.role not in ("client", "admin"):
            raise ValueError("role must be `client` or `admin`")


class KeyLimitsUpdate(msgspec.Struct, kw_only=True):
    rate_limit: RateLimit | None = None
    spend_limit: Amount | None = None


class Credit(msgspec.Struct, kw_only=True):
    amount: Amount  # USDC as a decimal string ("10.50"); an integer means whole USDC


def micro(amount: str | int | None, param: str) -> int | None:
    """A USDC amount from a client as integer micro-USDC, within what the books can hold."""
    if amount is None:
        return None
    if isinstance(amount, int):
        value = amount * receipts.MICRO
    else:
        try:
            value = receipts.parse_usdc(amount)
        except ValueError as exc:
            raise InvalidRequest(f"`{param}`: {exc}", param=param) from None
    if not 0 <= value <= bounds.MAX_MICRO:
        raise InvalidRequest(f"`{param}` must be between 0 and {receipts.usdc(bounds.MAX_MICRO)} USDC.", param=param)
    return value


def limits_view(limits: KeyLimits) -> dict[str, Any]:
    return {"rate_limit": limits.rate_limit, "spend_limit": None if limits.spend_limit is None else receipts.usdc(limits.spend_limit)}


def sent_fields(raw: bytes) -> set[str]:
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return set()
    return set(data) if isinstance(data, dict) else set()


async def _existing(request: Request) -> str:
    key_id = request.path_params["key_id"]
    if await plane(request).store.keys.get(key_id) is None:
        raise NotFound(f"No key `{key_id}`.", code="key_not_found")
    return key_id


async def create_key(request: Request, key: KeyRecord) -> Response:
    store = plane(request).store
    raw = await request.body()
    data = schemas.parse(raw, KeyCreate) if raw.strip() else KeyCreate()
    limits = KeyLimits(data.rate_limit, micro(data.spend_limit, "spend_limit"))  # refused before anything is created
    rec, plaintext = await store.keys.create(data.name, data.role)
    if limits != KeyLimits():
        await store.keys.set_limits(rec.id, limits)
    return json({"id": rec.id, "name": rec.name, "role": rec.role, "key": plaintext, "created_at": rec.created_at, **limits_view(limits)}, 201)


async def list_keys(request: Request, key: KeyRecord) -> Response:
    cp = plane(request)
    data = []
    for k in await cp.store.keys.list():
        limits = await cp.store.keys.limits(k.id)
        bal = await cp.billing.ledger.client_view(k.id)
        data.append({"id": k.id, "name": k.name, "role": k.role, "created_at": k.created_at, "revoked": k.revoked_at is not None, **limits_view(limits), "balance": receipts.usdc(bal["available"]), "held": receipts.usdc(bal["held"]), "spent": receipts.usdc(bal["spent"]), "spent_24h": receipts.usdc(bal["spent_24h"])})
    return json({"object": "list", "data": data})


async def update_key(request: Request, key: KeyRecord) -> Response:
    cp = plane(request)
    key_id = await _existing(request)
    raw = await request.body()
    data = schemas.parse(raw, KeyLimitsUpdate)
    current = await cp.store.keys.limits(key_id)
    sent = sent_fields(raw)
    limits = KeyLimits(
        data.rate_limit if "rate_limit" in sent else current.rate_limit,
        micro(data.spend_limit, "spend_limit") if "spend_limit" in sent else current.spend_limit,
    )
    await cp.store.keys.set_limits(key_id, limits)
    cp.billing.forget_key(key_id)  # other replicas see it within 2 s
    return json({"id": key_id, **limits_view(limits)})


async def credit_key(request: Request, key: KeyRecord) -> Response:
    cp = plane(request)
    key_id = await _existing(request)
    data = schemas.parse(await request.body(), Credit)
    amount = micro(data.amount, "amount")
    if amount is None or amount <= 0:
        raise InvalidRequest("`amount` must be a positive USDC amount, e.g. \"10.00\".", param="amount")
    try:
        balance = await cp.billing.ledger.credit(key_id, amount)
    except BalanceCap as exc:
        raise InvalidRequest(str(exc), param="amount") from None
    return json({"id": key_id, "credited": receipts.usdc(amount), "balance": receipts.usdc(balance), "balance_micro": balance})


async def revoke_key(request: Request, key: KeyRecord) -> Response:
    key_id = request.path_params["key_id"]
    if not await plane(request).store.keys.revoke(key_id):
        raise NotFound("No such active key.", code="key_not_found")
    return json({"id": key_id, "revoked": True})


routes = [
    Route("/api/v1/keys", admin(create_key), methods=["POST"]),
    Route("/api/v1/keys", admin(list_keys), methods=["GET"]),
    Route("/api/v1/keys/{key_id}", admin(revoke_key), methods=["DELETE"]),
    Route("/api/v1/keys/{key_id}", admin(update_key), methods=["PATCH"]),
    Route("/api/v1/keys/{key_id}/credit", admin(credit_key), methods=["POST"]),
]
