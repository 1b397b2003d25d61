"""A burst beyond the Redis pool waits for a connection instead of failing (a fleet
reconnecting at once to one replica checks a nonce per node)."""

from __future__ import annotations

import asyncio
import secrets

from infernet.control.store.redis import RedisNonces, connect


async def test_a_burst_past_the_pool_waits_for_a_connection(redis_url):
    client, prefix = connect(redis_url, max_connections=2)
    nonces = RedisNonces(client, prefix)
    try:
        got = await asyncio.gather(*(nonces.use(secrets.token_hex(8), "pk") for _ in range(50)))
        assert got == [True] * 50
    finally:
        await client.aclose()
