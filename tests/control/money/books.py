"""Helpers for the money tests: funded keys, a price table with visible numbers, the books."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import httpx

from tests.harness import Network

# Rates big enough that every token shows in the price, and odd enough to exercise rounding.
TEST_TABLE = {
    "tiers": {"cpu": {"input": 1_234_567, "output": 4_938_271}, ">=24gb": {"input": 2_000_003, "output": 8_000_017}},
    "fee_bps": 1500,
    "min_balance": 1_000_000,
    "node_rate_min_pct": 50,
    "node_rate_max_pct": 200,
    "default_output_cap": 4096,
    "chain": "base",
}


def expected_price(inp: int, out: int, in_rate: int, out_rate: int, fee_bps: int = 1500) -> tuple[int, int, int]:
    """Computed independently of the code under test: exact fractions, then the documented rounding."""
    gross = math.ceil(Fraction(inp * in_rate + out * out_rate, 1_000_000))
    fee = math.floor(Fraction(gross * fee_bps, 10_000))
    return gross, gross - fee, fee


async def set_table(admin: httpx.AsyncClient, table: dict[str, Any] = TEST_TABLE) -> None:
    r = await admin.put("/api/v1/pricing", json=table)
    assert r.status_code == 200, r.text


async def funded_key(admin: httpx.AsyncClient, amount: str | None = "5.00", **extra: Any) -> dict[str, Any]:
    r = await admin.post("/api/v1/keys", json={"name": "client", **extra})
    assert r.status_code == 201, r.text
    key = r.json()
    if amount:
        r = await admin.post(f"/api/v1/keys/{key['id']}/credit", json={"amount": amount})
        assert r.status_code == 200, r.text
    return key


async def balance(net: Network, key: str) -> dict[str, Any]:
    await net.wait_for(lambda: not net.cp.driver.jobs)  # a job's hold settles just after its response
    async with net.client(key) as c:
        r = await c.get("/api/v1/balance")
    assert r.status_code == 200, r.text
    return r.json()


async def books_balance(net: Network) -> None:
    async with net.client() as admin:
        r = await admin.get("/api/v1/ledger/check")
    assert r.json() == {"ok": True, "problems": []}, r.text
