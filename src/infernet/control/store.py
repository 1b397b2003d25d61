"""Persistence through SQLAlchemy Core: SQLite embedded, PostgreSQL in cluster mode.

Every job transition is one conditional UPDATE (`... WHERE status IN (...)`), so two
replicas or two racing tasks can never both claim or both finish the same job.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

log = logging.getLogger("infernet.store")
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
    sa.Column("body", sa.Text, nullable=False),  # canonical JSON, byte for byte what was signed
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


@functools.lru_cache(maxsize=64)
def _transition_stmt(allowed: tuple[str, ...], columns: tuple[str, ...]) -> Any:
    # Building a statement costs far more than running it; build each shape once.
    return (
        jobs.update()
        .where(jobs.c.id == sa.bindparam("p_id"), jobs.c.status.in_(allowed))
        .values({c: sa.bindparam("p_" + c) for c in columns})
    )


def _transition(job_id: str, allowed: tuple[str, ...], values: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    stmt = _transition_stmt(allowed, tuple(sorted(values)))
    return stmt, {"p_id": job_id, **{"p_" + k: v for k, v in values.items()}}


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


def upsert(conn: Any, table: sa.Table, keys: list[str], values: dict[str, Any], update: dict[str, Any] | None) -> Any:
    """INSERT ... ON CONFLICT (keys) DO UPDATE/NOTHING, on SQLite and PostgreSQL alike."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(table).values(**values)
    return stmt.on_conflict_do_update(index_elements=keys, set_=update) if update else stmt.on_conflict_do_nothing(index_elements=keys)


def _sqlalchemy_url(url: str) -> str:
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.journal = Journal(engine)
        self._key_cache: dict[str, tuple[float, KeyRecord | None]] = {}

    @classmethod
    async def open(cls, url: str) -> Store:
        sa_url = _sqlalchemy_url(url)
        engine: Any
        if sa_url.startswith("sqlite"):
            from infernet.control.inline_sqlite import InlineEngine

            sync_url = "sqlite:///" + sa_url.split(":///", 1)[1]
            engine = InlineEngine(sa.create_engine(sync_url, connect_args={"timeout": 30}))

            @sa.event.listens_for(engine.sync_engine, "connect")
            def _pragmas(dbapi_conn: Any, _: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

        else:
            engine = create_async_engine(sa_url)
        store = cls(engine)
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        return store

    async def close(self) -> None:
        await self.journal.drain()
        await self.engine.dispose()

    # -- API keys -------------------------------------------------------------------------

    async def create_key(self, name: str = "", role: str = "client", plaintext: str | None = None) -> tuple[KeyRecord, str]:
        plaintext = plaintext or new_api_key()
        rec = KeyRecord(id="key_" + secrets.token_hex(8), name=name, role=role, created_at=time.time(), revoked_at=None)
        async with self.engine.begin() as conn:
            await conn.execute(
                api_keys.insert().values(id=rec.id, key_hash=hash_key(plaintext), name=name, role=role, created_at=rec.created_at)
            )
        self._key_cache.pop(hash_key(plaintext), None)
        return rec, plaintext

    async def ensure_key(self, plaintext: str, name: str, role: str) -> KeyRecord:
        existing = await self.lookup_key(plaintext, cache=False)
        if existing is not None:
            return existing
        rec, _ = await self.create_key(name, role, plaintext)
        return rec

    async def lookup_key(self, plaintext: str, *, cache: bool = True) -> KeyRecord | None:
        digest = hash_key(plaintext)
        now = time.monotonic()
        if cache and (hit := self._key_cache.get(digest)) and hit[0] > now:
            return hit[1]
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(api_keys).where(api_keys.c.key_hash == digest))).first()
        rec = None
        if row is not None and row.revoked_at is None:
            rec = KeyRecord(row.id, row.name, row.role, row.created_at, row.revoked_at)
        # Short TTL: a revoked key stops working within 2 s on every replica.
        self._key_cache[digest] = (now + 2.0, rec)
        return rec

    async def list_keys(self) -> list[KeyRecord]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at))).all()
        return [KeyRecord(r.id, r.name, r.role, r.created_at, r.revoked_at) for r in rows]

    async def revoke_key(self, key_id: str) -> bool:
        async with self.engine.begin() as conn:
            res = await conn.execute(
                api_keys.update().where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)).values(revoked_at=time.time())
            )
        self._key_cache.clear()
        return res.rowcount == 1

    async def get_key(self, key_id: str) -> KeyRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id))).first()
        return KeyRecord(row.id, row.name, row.role, row.created_at, row.revoked_at) if row else None

    async def key_limits(self, key_id: str) -> KeyLimits:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(key_limits).where(key_limits.c.key_id == key_id))).first()
        return KeyLimits(row.rate_limit, row.spend_limit) if row else KeyLimits()

    async def set_key_limits(self, key_id: str, limits: KeyLimits) -> None:
        values = {"rate_limit": limits.rate_limit, "spend_limit": limits.spend_limit}
        async with self.engine.begin() as conn:
            await conn.execute(upsert(conn, key_limits, ["key_id"], {"key_id": key_id, **values}, values))

    async def hit_rate(self, key_id: str, per_minute: int, now: float | None = None) -> float | None:
        """Count one request against a per-minute limit shared by every replica.

        A sliding-window counter: the previous minute's count, weighted by how much of it
        still falls inside the last 60 s, plus this minute's. The increment is atomic; a
        request over the limit takes its count back. Returns None when allowed, else the
        seconds to wait.
        """
        now = time.time() if now is None else now
        window, into = divmod(now, 60.0)
        window = int(window)
        async with self.engine.begin() as conn:
            stmt = upsert(conn, rate_counters, ["key_id", "window"], {"key_id": key_id, "window": window, "count": 1}, {"count": rate_counters.c.count + 1})
            count = (await conn.execute(stmt.returning(rate_counters.c.count))).scalar_one()
            prev = (await conn.execute(sa.select(rate_counters.c.count).where(rate_counters.c.key_id == key_id, rate_counters.c.window == window - 1))).scalar() or 0
            estimate = prev * (60.0 - into) / 60.0 + count
            if estimate <= per_minute:
                if count == 1:
                    await conn.execute(rate_counters.delete().where(rate_counters.c.key_id == key_id, rate_counters.c.window < window - 1))
                return None
            await conn.execute(rate_counters.update().where(rate_counters.c.key_id == key_id, rate_counters.c.window == window).values(count=rate_counters.c.count - 1))
        # When the previous minute's weight has decayed enough to admit one more request.
        if prev and count - 1 < per_minute:
            return max(1.0, 60.0 - into - (per_minute - count) * 60.0 / prev)
        return max(1.0, 60.0 - into)

    async def get_setting(self, name: str) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(sa.select(settings.c.value).where(settings.c.name == name))).scalar()

    async def put_setting(self, name: str, value: Any) -> None:
        values = {"value": value, "updated_at": time.time()}
        async with self.engine.begin() as conn:
            await conn.execute(upsert(conn, settings, ["name"], {"name": name, **values}, values))

    # -- replay protection (shared by every replica) --------------------------------------

    async def use_nonce(self, nonce: str, pubkey: str, ttl_s: float = 180.0) -> bool:
        """Record a nonce; False when any replica has seen it before."""
        now = time.time()
        try:
            async with self.engine.begin() as conn:
                await conn.execute(nonces.delete().where(nonces.c.expires_at < now))
                await conn.execute(nonces.insert().values(nonce=nonce, pubkey=pubkey, expires_at=now + ttl_s))
        except IntegrityError:
            return False
        return True

    async def check_signed(self, header: str | None, method: str, url: Any, body: bytes = b"") -> Any:
        """A node-signed request (`X-Infernet-Auth`) whose nonce no replica has seen before.

        Raises `auth.AuthError` saying why not. `url` is the request's Starlette URL."""
        from infernet.protocol import auth

        target = url.path + (f"?{url.query}" if url.query else "")
        signed = auth.check_request(header, method, target, body)
        if not await self.use_nonce(signed.nonce, signed.pubkey):
            raise auth.AuthError("replayed nonce")
        return signed

    # -- nodes ----------------------------------------------------------------------------

    async def upsert_node(self, node_id: str, **fields: Any) -> None:
        now = time.time()
        async with self.engine.begin() as conn:
            res = await conn.execute(nodes.update().where(nodes.c.id == node_id).values(last_seen=now, **fields))
            if res.rowcount == 0:
                await conn.execute(nodes.insert().values(id=node_id, first_seen=now, last_seen=now, **fields))

    async def set_node_status(self, node_id: str, status: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(nodes.update().where(nodes.c.id == node_id).values(status=status, last_seen=time.time()))

    async def list_nodes(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(nodes).order_by(nodes.c.first_seen))).mappings().all()
        return [dict(r) for r in rows]

    # -- jobs -----------------------------------------------------------------------------

    async def create_job(self, **row: Any) -> dict[str, Any] | None:
        """Insert a job; with an idempotency key already used by this API key, return that job instead."""
        now = time.time()
        values = {"attempts": 0, "created_at": now, "updated_at": now, **row}
        try:
            async with self.engine.begin() as conn:
                await conn.execute(jobs.insert().values(**values))
        except IntegrityError:
            if row.get("idempotency_key"):
                return await self.job_by_idempotency(row["key_id"], row["idempotency_key"])
            raise
        return None

    async def job_by_idempotency(self, key_id: str, idem: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(jobs).where(jobs.c.key_id == key_id, jobs.c.idempotency_key == idem))
            ).mappings().first()
        return dict(row) if row else None

    async def transition(self, job_id: str, allowed: tuple[str, ...], status: str, **fields: Any) -> bool:
        """Atomically move a job from one of `allowed` to `status`; False if it was not there."""
        now = time.time()
        if status in TERMINAL:
            fields.setdefault("finished_at", now)
        async with self.engine.begin() as conn:
            res = await conn.execute(
                jobs.update().where(jobs.c.id == job_id, jobs.c.status.in_(allowed)).values(status=status, updated_at=now, **fields)
            )
        return res.rowcount == 1

    # -- the same writes, queued on the journal (the request path does not wait) -----------

    def queue_insert_job(self, **row: Any) -> asyncio.Future[bool]:
        now = time.time()
        return self.journal.submit(_Op("insert", row["id"], (), {"attempts": 0, "created_at": now, "updated_at": now, **row}))

    def queue_transition(self, job_id: str, allowed: tuple[str, ...], status: str, *, urgent: bool = False, **fields: Any) -> asyncio.Future[bool]:
        """`urgent`: someone awaits the answer on the request path; commit without the window."""
        now = time.time()
        if status in TERMINAL:
            fields.setdefault("finished_at", now)
        return self.journal.submit(_Op("update", job_id, allowed, {"status": status, "updated_at": now, **fields}), urgent=urgent)

    def queue_finish(self, job_id: str, allowed: tuple[str, ...], status: str, events: list[tuple[int, str, dict]], **fields: Any) -> asyncio.Future[bool]:
        now = time.time()
        values = {"status": status, "updated_at": now, "finished_at": now, **fields}
        return self.journal.submit(_Op("update", job_id, allowed, values, list(events)))

    async def get_job(self, job_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(jobs).where(jobs.c.id == job_id))).mappings().first()
        return dict(row) if row else None

    async def list_jobs(self, key_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        q = sa.select(jobs).order_by(jobs.c.created_at.desc()).limit(limit)
        if key_id is not None:
            q = q.where(jobs.c.key_id == key_id)
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(q)).mappings().all()]

    async def unfinished_jobs(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            q = sa.select(jobs).where(jobs.c.status.not_in(TERMINAL))
            return [dict(r) for r in (await conn.execute(q)).mappings().all()]

    async def finish_job(self, job_id: str, allowed: tuple[str, ...], status: str, events: list[tuple[int, str, dict]], **fields: Any) -> bool:
        """Terminal transition and the job's event log in one transaction."""
        now = time.time()
        async with self.engine.begin() as conn:
            res = await conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.status.in_(allowed))
                .values(status=status, updated_at=now, finished_at=now, **fields)
            )
            if res.rowcount != 1:
                return False
            if events:
                await conn.execute(job_events.insert(), [{"job_id": job_id, "seq": s, "type": t, "data": d} for s, t, d in events])
        return True

    async def job_events_after(self, job_id: str, after: int) -> list[tuple[int, str, dict]]:
        async with self.engine.connect() as conn:
            q = sa.select(job_events).where(job_events.c.job_id == job_id, job_events.c.seq > after).order_by(job_events.c.seq)
            return [(r.seq, r.type, r.data) for r in (await conn.execute(q)).all()]


@dataclass
class _Op:
    kind: str  # "insert", "update", or "call" (any `fn(conn)`, e.g. a ledger movement)
    job_id: str
    allowed: tuple[str, ...]
    values: dict[str, Any]
    events: list[tuple[int, str, dict]] | None = None
    # (future, whether it applied) — None: decided when the batch commits
    futures: list[tuple[asyncio.Future[Any], bool | None]] | None = None
    fn: Any = None
    urgent: bool = False


class Journal:
    """Job writes, committed in order by one writer task, many per transaction.

    The job's owner (its driver task on this replica) is the only writer of its row, so the
    request path need not wait for the database: it queues the write and carries on. Writes
    wait up to `window_s` and are compacted: a job inserted and finished within the window
    costs one INSERT of its final row (plus its events), not four statements. Every update
    is still conditional on the status it expects, so a late write can never move a job
    backwards; each returned future says whether its write applied.
    """

    def __init__(self, engine: AsyncEngine, window_s: float = 0.025, max_batch: int = 512) -> None:
        self._engine = engine
        self._window_s = window_s
        self._max_batch = max_batch
        self._pending: list[_Op] = []
        self._inserts: dict[str, _Op] = {}  # unflushed inserts, by job id, for compaction
        self._has_work = asyncio.Event()
        self._flush_now = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, op: Any, *, urgent: bool = False) -> asyncio.Future[Any]:
        """Queue a job write (`_Op`) or any `fn(conn) -> result` to run in order with them."""
        if not isinstance(op, _Op):
            op = _Op("call", "", (), {}, fn=op)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        pending_insert = self._inserts.get(op.job_id) if op.kind == "update" else None
        if pending_insert is not None:
            # Fold the update into the row that has not been written yet.
            applies = pending_insert.values["status"] in op.allowed
            if applies:
                pending_insert.values.update(op.values)
                if op.events:
                    pending_insert.events = (pending_insert.events or []) + op.events
            pending_insert.futures = (pending_insert.futures or []) + [(fut, applies)]
            pending_insert.urgent |= urgent
        else:
            op.futures = [(fut, None)]
            op.urgent = urgent
            self._pending.append(op)
            if op.kind == "insert":
                self._inserts[op.job_id] = op
        self._idle.clear()
        self._has_work.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        if urgent or len(self._pending) >= self._max_batch:
            self._flush_now.set()
        return fut

    async def _run(self) -> None:
        while True:
            if not self._pending:
                self._idle.set()
                self._has_work.clear()
                await self._has_work.wait()
                continue
            try:
                await asyncio.wait_for(self._flush_now.wait(), self._window_s)
            except TimeoutError:
                pass
            self._flush_now.clear()
            batch, self._pending, self._inserts = self._pending, [], {}
            for part in _urgent_first(batch):
                await self._commit(part)

    async def _commit(self, batch: list[_Op]) -> None:
        try:
            results = await self._write(batch)
        except Exception as exc:
            log.exception("a batch of %d job writes failed", len(batch))
            for op in batch:
                for fut, _ in op.futures or ():
                    if not fut.done():
                        fut.set_exception(exc)
            return
        for op, result in zip(batch, results):
            for fut, applies in op.futures or ():
                if not fut.done():
                    fut.set_result(result if op.kind == "call" else bool(result) and applies is not False)

    async def _write(self, batch: list[_Op]) -> list[Any]:
        results: list[Any] = []
        async with self._engine.begin() as conn:
            inserts = [op.values for op in batch if op.kind == "insert"]
            if inserts:
                await conn.execute(jobs.insert(), _uniform(inserts))
            events = [{"job_id": op.job_id, "seq": s, "type": t, "data": d} for op in batch if op.kind == "insert" and op.events for s, t, d in op.events]
            for op in batch:
                if op.kind == "insert":
                    results.append(True)
                    continue
                if op.kind == "call":
                    results.append(await op.fn(conn))
                    continue
                stmt, params = _transition(op.job_id, op.allowed, op.values)
                ok = (await conn.execute(stmt, params)).rowcount == 1
                results.append(ok)
                if ok and op.events:
                    events += [{"job_id": op.job_id, "seq": s, "type": t, "data": d} for s, t, d in op.events]
            if events:
                await conn.execute(job_events.insert(), events)
        return results

    async def flush(self) -> None:
        """Commit everything queued so far, now (not whatever arrives meanwhile)."""
        futures = [f for op in self._pending for f, _ in op.futures or ()]
        if futures:
            self._flush_now.set()
            await asyncio.gather(*futures, return_exceptions=True)

    async def drain(self) -> None:
        """Wait until everything queued so far is committed."""
        if self._pending:
            self._flush_now.set()
        await self._idle.wait()


def _urgent_first(batch: list[_Op]) -> list[list[_Op]]:
    """Split a batch so that an awaited job write (a claim) commits in a small transaction of
    its own, ahead of the bulk, taking along every earlier write of the same job so that each
    job's writes keep their order. Ledger movements never jump the queue: a hold must see every
    settlement queued before it, or it could refuse money that is about to come back."""
    if not any(op.urgent for op in batch) or any(op.urgent and op.kind == "call" for op in batch):
        return [batch]
    jobs_ = {op.job_id for op in batch if op.urgent}
    first = [op for op in batch if op.kind != "call" and op.job_id in jobs_]
    rest = [op for op in batch if op.kind == "call" or op.job_id not in jobs_]
    return [first, rest] if rest else [first]


def _uniform(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """executemany needs the same keys in every row."""
    keys = set().union(*rows)
    return [{k: r.get(k) for k in keys} for r in rows]
