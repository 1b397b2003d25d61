"""Per-minute request limits of API keys, counted in the database (the embedded default;
a cluster counts them in Redis, `store/redis.py`, with the same answers)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from infernet.control.store.engine import upsert
from infernet.control.store.schema import rate_counters


@dataclass(frozen=True, slots=True)
class RateCount:
    """One request counted against a per-minute limit."""

    limit: int
    used: float  # the sliding estimate of requests in the last 60 s, this one included when allowed
    reset_s: float  # until the current minute's window rolls over
    wait: float | None  # None when allowed, else seconds until one more would be

    @property
    def remaining(self) -> int:
        return max(0, int(self.limit - self.used))


class RateRepo:
    def __init__(self, engine: Any) -> None:
        self._engine = engine

    async def hit(self, key_id: str, per_minute: int, now: float | None = None) -> RateCount:
        """Count one request against a per-minute limit shared by every replica.

        A sliding-window counter: the previous minute's count, weighted by how much of it
        still falls inside the last 60 s, plus this minute's. The increment is atomic; a
        request over the limit takes its count back. `wait` is None when allowed, else the
        seconds to wait.
        """
        now = time.time() if now is None else now
        window, into = divmod(now, 60.0)
        window = int(window)
        async with self._engine.begin() as conn:
            stmt = upsert(conn, rate_counters, ["key_id", "window"], {"key_id": key_id, "window": window, "count": 1}, {"count": rate_counters.c.count + 1})
            count = (await conn.execute(stmt.returning(rate_counters.c.count))).scalar_one()
            prev = (await conn.execute(sa.select(rate_counters.c.count).where(rate_counters.c.key_id == key_id, rate_counters.c.window == window - 1))).scalar() or 0
            estimate = prev * (60.0 - into) / 60.0 + count
            if estimate <= per_minute:
                if count == 1:
                    await conn.execute(rate_counters.delete().where(rate_counters.c.key_id == key_id, rate_counters.c.window < window - 1))
                return RateCount(per_minute, estimate, 60.0 - into, None)
            await conn.execute(rate_counters.update().where(rate_counters.c.key_id == key_id, rate_counters.c.window == window).values(count=rate_counters.c.count - 1))
        # When the previous minute's weight has decayed enough to admit one more request.
        return RateCount(per_minute, estimate - 1, 60.0 - into, wait_for(count, prev, per_minute, into))


def wait_for(count: int, prev: float, per_minute: int, into: float) -> float:
    """Seconds until the previous minute's weight has decayed enough to admit one more."""
    if prev and count - 1 < per_minute:
        return max(1.0, 60.0 - into - (per_minute - count) * 60.0 / prev)
    return max(1.0, 60.0 - into)
