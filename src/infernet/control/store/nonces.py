"""Replay protection for node-signed requests, shared by every replica."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.exc import IntegrityError

from infernet.control.store.schema import nonces


class NonceRepo:
    def __init__(self, engine: Any) -> None:
        self._engine = engine

    async def use(self, nonce: str, pubkey: str, ttl_s: float = 180.0) -> bool:
        """Record a nonce; False when any replica has seen it before."""
        now = time.time()
        try:
            async with self._engine.begin() as conn:
                await conn.execute(nonces.delete().where(nonces.c.expires_at < now))
                await conn.execute(nonces.insert().values(nonce=nonce, pubkey=pubkey, expires_at=now + ttl_s))
        except IntegrityError:
            return False
        return True
