"""The tables, for SQLite and PostgreSQL alike (SQLAlchemy Core)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("role", sa.String(16), nullable=False, default="client"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
)

nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # the node's x-only public key
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("backend", sa.String(32), nullable=False),
    sa.Column("tier", sa.String(16), nullable=False),
    sa.Column("models", sa.JSON, nullable=False),
    sa.Column("capacity", sa.Integer, nullable=False),
    sa.Column("hardware", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("first_seen", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("key_id", sa.String(32), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("node_id", sa.String(64), nullable=True),
    sa.Column("body", sa.JSON, nullable=False),
    sa.Column("idempotency_key", sa.String(200), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("prompt_tokens", sa.Integer, nullable=True),
    sa.Column("completion_tokens", sa.Integer, nullable=True),
    sa.Column("finish_reason", sa.String(32), nullable=True),
    sa.Column("output", sa.Text, nullable=True),
    sa.Column("result", sa.JSON, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.UniqueConstraint("key_id", "idempotency_key", name="uq_jobs_idempotency"),
)

job_events = sa.Table(
    "job_events",
    metadata,
    sa.Column("job_id", sa.String(40), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
)

nonces = sa.Table(
    "nonces",
    metadata,
    sa.Column("nonce", sa.String(128), primary_key=True),
    sa.Column("pubkey", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)

# -- money (see control/ledger.py) --------------------------------------------------------

_BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only

balances = sa.Table(
    "balances",
    metadata,
    sa.Column("account", sa.String(100), primary_key=True),
    sa.Column("balance", sa.BigInteger, nullable=False),
)

ledger_entries = sa.Table(
    "ledger_entries",
    metadata,
    sa.Column("id", _BigID, primary_key=True, autoincrement=True),
    sa.Column("txn", sa.String(40), nullable=False, index=True),
    sa.Column("account", sa.String(100), nullable=False, index=True),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("job_id", sa.String(40), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

holds = sa.Table(
    "holds",
    metadata,
    sa.Column("job_id", sa.String(40), primary_key=True),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # held | settled | released
    sa.Column("charged", sa.BigInteger, nullable=False, default=0),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("settled_at", sa.Float, nullable=True),
    sa.Index("ix_holds_key_status", "key_id", "status", "settled_at"),
)

receipts = sa.Table(
    "receipts",
    metadata,
    sa.Column("job_id", sa.String(40), primary_key=True),
    sa.Column("node_pubkey", sa.String(64), nullable=False, index=True),
    sa.Column("key_id", sa.String(32), nullable=False, index=True),
    sa.Column("price", sa.BigInteger, nullable=False),
    sa.Column("fee", sa.BigInteger, nullable=False),
    sa.Column("value", sa.BigInteger, nullable=False),
    sa.Column("completed_at", sa.BigInteger, nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # the node's claim: canonical JSON, byte for byte what it signed
    sa.Column("settlement", sa.Text, nullable=False),  # what the platform charged: canonical JSON it signed
    sa.Column("node_signature", sa.String(128), nullable=False),
    sa.Column("platform_signature", sa.String(128), nullable=False),
    sa.Column("payout_id", sa.String(40), nullable=True, index=True),
)

payouts = sa.Table(
    "payouts",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("node_pubkey", sa.String(64), nullable=False, index=True),
    sa.Column("total", sa.BigInteger, nullable=False),
    sa.Column("receipt_count", sa.Integer, nullable=False),
    sa.Column("record", sa.Text, nullable=False),  # canonical JSON
    sa.Column("platform_signature", sa.String(128), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

key_limits = sa.Table(
    "key_limits",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("rate_limit", sa.Integer, nullable=True),  # requests per minute
    sa.Column("spend_limit", sa.BigInteger, nullable=True),  # micro-USDC per rolling 24 h
)

rate_counters = sa.Table(
    "rate_counters",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("window", sa.BigInteger, primary_key=True),  # unix minute
    sa.Column("count", sa.Integer, nullable=False),
)

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

TERMINAL = ("completed", "failed", "cancelled")
