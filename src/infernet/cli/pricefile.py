"""The price table as a person writes it: USDC decimals, like every amount the CLI shows.

The API keeps integer micro-USDC (`GET /api/v1/pricing` says so in its `unit`); the CLI
converts at its edge. `infernet pricing --json` prints the table in USDC and `pricing set`
reads that back; a file that carries the API's own `unit` (saved from the API) is taken
as micro-USDC, so both shapes work and neither is guessed from the size of a number.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from infernet.protocol import receipts

UNIT = "USDC per million tokens"
API_UNIT = "micro-USDC per million tokens"
MONEY_RATES = ("input", "output")  # in each tier
MONEY_FIELDS = ("min_balance",)


def to_usdc(table: dict[str, Any]) -> dict[str, Any]:
    """An API table (micro-USDC) as the CLI shows and reads it (USDC strings)."""
    out = {k: v for k, v in table.items() if k not in ("object", "unit")}
    out["tiers"] = {t: {k: receipts.usdc(v) if k in MONEY_RATES else v for k, v in r.items()} for t, r in table.get("tiers", {}).items()}
    for k in MONEY_FIELDS:
        if k in out:
            out[k] = receipts.usdc(out[k])
    return {"unit": UNIT, **out}


def _micro(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{where}: {value!r} is not an amount of USDC")
    try:
        amount = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except (InvalidOperation, TypeError, AttributeError):
        raise ValueError(f"{where}: {value!r} is not an amount of USDC (write it like \"0.04\")") from None
    micro = amount * 1_000_000
    if micro != micro.to_integral_value():
        raise ValueError(f"{where}: {value} has more than 6 decimals (USDC has 6)")
    if micro < 0:
        raise ValueError(f"{where}: {value} is negative")
    return int(micro)


def parse(text: str) -> dict[str, Any]:
    """A table file to the API's shape (micro-USDC). ValueError with the field at fault."""
    data = json.loads(text, parse_float=Decimal)
    if not isinstance(data, dict):
        raise ValueError("the file must hold one JSON object, as `infernet pricing --json` prints it")
    unit = data.pop("unit", UNIT)
    data.pop("object", None)
    if unit == API_UNIT:
        return _plain(data)
    if unit != UNIT:
        raise ValueError(f"unknown unit {unit!r}: write amounts in USDC ({UNIT!r})")
    for tier, rates in (data.get("tiers") or {}).items():
        if isinstance(rates, dict):
            for k in MONEY_RATES:
                if k in rates:
                    rates[k] = _micro(rates[k], f"tiers.{tier}.{k}")
    for k in MONEY_FIELDS:
        if k in data:
            data[k] = _micro(data[k], k)
    return _plain(data)


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    """Decimals left in other fields back to JSON numbers (the API checks their types)."""
    return json.loads(json.dumps(data, default=lambda d: int(d) if d == d.to_integral_value() else float(d)))
