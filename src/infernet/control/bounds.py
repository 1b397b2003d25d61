"""The largest number each thing a client, an admin or a node sends may be.

Every number is bounded at the edge so that it fits the column it lands in and every sum the
ledger makes with it: an overflow is a 400 naming the parameter, never a database error.
"""

from __future__ import annotations

MAX_OUTPUT_TOKENS = 1_000_000  # a cap on one answer; no model's context is larger
MAX_MICRO = 10**15  # one billion USDC: any amount, limit or balance (BIGINT holds 9.2e18)
MAX_RATE = 10**12  # micro-USDC per million tokens: a million USDC per million tokens
MAX_RATE_LIMIT = 1_000_000  # requests per minute
MAX_OUTPUT_CAP = 10_000_000  # tokens the price table may hold for a job of unknown context
INT64 = (-(2**63), 2**63 - 1)  # OpenAI's seed is an int64
MAX_EVENT_ID = 2**31 - 1
MAX_STOP_CHARS = 1_000
