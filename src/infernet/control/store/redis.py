"""What replicas of a cluster share live in Redis rather than the database: nonces of
node-signed requests and per-minute rate counters. Same interfaces and same answers as the
database versions (`nonces.py`, `rates.py`); each decision is one atomic Redis call, so a
limit of 100 a minute across three replicas lets through 100, not 300."""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis

from infernet.control.store.rates import RateCount, wait_for


POOL_WAIT_S = 10.0  # a call waits this long for a free connection before it fails


def connect(url: str, *, max_connections: int = 32) -> tuple[Any, str]:
    """A client and the key prefix: `redis://host:6379/0#name` namespaces every key under
    `name` (default `infernet`), so several networks (or tests) can share one Redis.

    The pool blocks: a call beyond `max_connections` at once waits for a connection instead
    of failing. (redis-py's default pool raises `MaxConnectionsError`: a burst of nodes
    reconnecting to a replica had their upgrades fail in its nonce check, a 500 each.)"""
    url, _, name = url.partition("#")
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=POOL_WAIT_S)
    return aioredis.Redis(connection_pool=pool), name or "infernet"

# Sliding window over two fixed minutes: this minute's count plus the previous minute's,
# weighted by how much of it is still inside the last 60 s. A request over the limit takes
# its count back. Returns {allowed (0/1), count, previous}.
_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], 150) end
local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
local estimate = prev * (60.0 - tonumber(ARGV[2])) / 60.0 + count
if estimate <= tonumber(ARGV[1]) then return {1, count, prev} end
redis.call('DECR', KEYS[1])
return {0, count, prev}
"""


class RedisRates:
    def __init__(self, redis: Any, prefix: str = "infernet") -> None:
        self._r = redis
        self._p = prefix
        self._hit = redis.register_script(_HIT)

    async def hit(self, key_id: str, per_minute: int, now: float | None = None) -> RateCount:
        now = time.time() if now is None else now
        window, into = divmod(now, 60.0)
        window = int(window)
        key = f"{self._p}:rate:{key_id}:"
        allowed, count, prev = await self._hit(keys=[key + str(window), key + str(window - 1)], args=[per_minute, into])
        estimate = prev * (60.0 - into) / 60.0 + count
        if allowed:
            return RateCount(per_minute, estimate, 60.0 - into, None)
        return RateCount(per_minute, estimate - 1, 60.0 - into, wait_for(count, prev, per_minute, into))


class RedisNonces:
    def __init__(self, redis: Any, prefix: str = "infernet") -> None:
        self._r = redis
        self._p = prefix

    async def use(self, nonce: str, pubkey: str, ttl_s: float = 180.0) -> bool:
        """Record a nonce; False when any replica has seen it before."""
        return bool(await self._r.set(f"{self._p}:nonce:{nonce}", pubkey, nx=True, px=int(ttl_s * 1000)))
