"""Opening the database, and the one upsert helper every repository and the ledger share."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine


def upsert(conn: Any, table: sa.Table, keys: list[str], values: dict[str, Any], update: dict[str, Any] | None) -> Any:
    """INSERT ... ON CONFLICT (keys) DO UPDATE/NOTHING, on SQLite and PostgreSQL alike."""
    stmt = insert_for(conn.dialect.name)(table).values(**values)
    return stmt.on_conflict_do_update(index_elements=keys, set_=update) if update else stmt.on_conflict_do_nothing(index_elements=keys)


def insert_for(dialect: str) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def sqlalchemy_url(url: str) -> str:
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()


def _dumps(value: Any) -> str:
    # A job's body, events and result go through here on every write: msgspec, not json.
    return _enc.encode(value).decode()


def _loads(text: str | bytes) -> Any:
    try:
        return _dec.decode(text)
    except msgspec.DecodeError:  # a row written by Python's json may hold NaN or Infinity
        return json.loads(text)


async def open_engine(url: str, *, pool_size: int = 10) -> Any:
    """An async engine. SQLite runs inline on the loop (`inline_sqlite`); PostgreSQL goes
    through asyncpg, `pool_size` connections and as many again in a burst."""
    sa_url = sqlalchemy_url(url)
    engine: Any
    if sa_url.startswith("sqlite"):
        from infernet.control.store.inline_sqlite import InlineEngine

        path = sa_url.split(":///", 1)[1]
        file = path not in ("", ":memory:") and not path.startswith("file::memory:")
        sync_engine = sa.create_engine("sqlite:///" + path, connect_args={"timeout": 30}, json_serializer=_dumps, json_deserializer=_loads)

        @sa.event.listens_for(sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            if file:  # the engine's own thread checkpoints (see inline_sqlite)
                cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.close()

        engine = InlineEngine(sync_engine, path if file else None)

    else:
        engine = create_async_engine(sa_url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, json_serializer=_dumps, json_deserializer=_loads)
    return engine
