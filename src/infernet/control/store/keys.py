"""API keys, their limits and the shared per-minute rate counters."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from infernet.control.store.engine import upsert
from infernet.control.store.schema import api_keys, key_limits

KEY_CACHE_S = 2.0  # a revoked key stops working within this long on every replica


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def new_api_key() -> str:
    return "inf-" + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    name: str
    role: str
    created_at: float
    revoked_at: float | None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True, slots=True)
class KeyLimits:
    rate_limit: int | None = None  # requests per minute
    spend_limit: int | None = None  # micro-USDC per rolling 24 h


def _record(row: Any) -> KeyRecord:
    return KeyRecord(row.id, row.name, row.role, row.created_at, row.revoked_at)


class KeyRepo:
    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}
        # One query per key at a time: a thousand requests arriving on one key with the cache
        # cold asked the database a thousand times and ran the pool dry (bench/fleet.py).
        self._asking: dict[str, asyncio.Future[KeyRecord | None]] = {}

    async def create(self, name: str = "", role: str = "client", plaintext: str | None = None) -> tuple[KeyRecord, str]:
        plaintext = plaintext or new_api_key()
        rec = KeyRecord(id="key_" + secrets.token_hex(8), name=name, role=role, created_at=time.time(), revoked_at=None)
        async with self._engine.begin() as conn:
            await conn.execute(api_keys.insert().values(id=rec.id, key_hash=hash_key(plaintext), name=name, role=role, created_at=rec.created_at))
        self._cache.pop(hash_key(plaintext), None)
        return rec, plaintext

    async def ensure(self, plaintext: str, name: str, role: str) -> KeyRecord:
        existing = await self.lookup(plaintext, cache=False)
        if existing is not None:
            return existing
        try:
            rec, _ = await self.create(name, role, plaintext)
        except sa.exc.IntegrityError:
            # Replicas started together each seed the same admin key: the one that lost the
            # insert takes the winner's row (it used to fail its startup and exit).
            existing = await self.lookup(plaintext, cache=False)
            if existing is None:
                raise
            return existing
        return rec

    async def lookup(self, plaintext: str, *, cache: bool = True) -> KeyRecord | None:
        digest = hash_key(plaintext)
        now = time.monotonic()
        if cache and (hit := self._cache.get(digest)) and hit[0] > now:
            return hit[1]
        if not cache:
            return await self._query(digest, now)
        asking = self._asking.get(digest)
        if asking is None:  # the query runs as its own task: a caller cancelled never cancels it for the others
            asking = self._asking[digest] = asyncio.ensure_future(self._query(digest, now))
            asking.add_done_callback(lambda _t: self._asking.pop(digest, None))
        return await asyncio.shield(asking)

    async def _query(self, digest: str, now: float) -> KeyRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(api_keys).where(api_keys.c.key_hash == digest))).first()
        rec = _record(row) if row is not None and row.revoked_at is None else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now + KEY_CACHE_S, rec)
        return rec

    def forget(self) -> None:
        """Drop the lookup cache (this replica sees a revocation at once)."""
        self._cache.clear()

    async def list(self) -> list[KeyRecord]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at))).all()
        return [_record(r) for r in rows]

    async def revoke(self, key_id: str) -> bool:
        async with self._engine.begin() as conn:
            res = await conn.execute(api_keys.update().where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)).values(revoked_at=time.time()))
        self.forget()
        return res.rowcount == 1

    async def get(self, key_id: str) -> KeyRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id))).first()
        return _record(row) if row else None

    async def limits(self, key_id: str) -> KeyLimits:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(key_limits).where(key_limits.c.key_id == key_id))).first()
        return KeyLimits(row.rate_limit, row.spend_limit) if row else KeyLimits()

    async def set_limits(self, key_id: str, limits: KeyLimits) -> None:
        values = {"rate_limit": limits.rate_limit, "spend_limit": limits.spend_limit}
        async with self._engine.begin() as conn:
            await conn.execute(upsert(conn, key_limits, ["key_id"], {"key_id": key_id, **values}, values))
