"""SQLite run inline on the event loop, behind the async interface the Store uses.

aiosqlite runs every statement on a worker thread, and under load each statement then waits for
the busy event loop to pick up its reply: a six-statement ledger write measured 14 ms in the
relay. SQLite statements take microseconds, so for SQLite the Store runs them inline through
SQLAlchemy's sync engine; PostgreSQL keeps asyncpg, which is truly asynchronous.

The one rule this needs: inside a transaction, await nothing but its statements (the Store
and the journal never do), so transactions on the loop never interleave.

Checkpoints (copying the write-ahead log into the database file, with an fsync) would stall
the loop for milliseconds whenever a commit crossed SQLite's automatic threshold, so the
loop's connections never checkpoint: a thread of the engine's own does it, every second, on
a connection of its own (SQLite lets a checkpoint run beside a writer in WAL mode).
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

import sqlalchemy as sa

CHECKPOINT_S = 1.0


class InlineConnection:
    def __init__(self, conn: sa.Connection) -> None:
        self.sync_connection = conn
        self.dialect = conn.dialect

    async def execute(self, statement: Any, parameters: Any = None, **kw: Any) -> Any:
        return self.sync_connection.execute(statement, parameters, **kw)

    async def scalar(self, statement: Any, parameters: Any = None, **kw: Any) -> Any:
        return self.sync_connection.scalar(statement, parameters, **kw)

    async def run_sync(self, fn: Any, *args: Any, **kw: Any) -> Any:
        return fn(self.sync_connection, *args, **kw)

    async def execution_options(self, **opts: Any) -> InlineConnection:
        self.sync_connection.execution_options(**opts)
        return self


class _Block:
    def __init__(self, cm: Any) -> None:
        self._cm = cm

    async def __aenter__(self) -> InlineConnection:
        return InlineConnection(self._cm.__enter__())

    async def __aexit__(self, *exc: Any) -> Any:
        return self._cm.__exit__(*exc)


class InlineEngine:
    def __init__(self, sync_engine: sa.Engine, path: str | None = None) -> None:
        """`path`: the database file, checkpointed by a thread (None: in memory)."""
        self.sync_engine = sync_engine
        self.dialect = sync_engine.dialect
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if path is not None:
            self._checkpointer = threading.Thread(target=self._checkpoints, args=(path,), name="sqlite-checkpoint", daemon=True)
            self._checkpointer.start()

    def _checkpoints(self, path: str) -> None:
        conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
        try:
            while not self._stop.wait(CHECKPOINT_S):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:  # busy or gone: the next round tries again
                    pass
        finally:
            conn.close()

    def begin(self) -> _Block:
        return _Block(self.sync_engine.begin())

    def connect(self) -> _Block:
        return _Block(self.sync_engine.connect())

    async def dispose(self) -> None:
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        self.sync_engine.dispose()
