"""SQLite's checkpoints run on the engine's own thread, never inside a commit on the loop."""

from __future__ import annotations

import asyncio

from infernet.control.store import Store
from infernet.control.store.schema import settings
from infernet.control.store.inline_sqlite import CHECKPOINT_S


async def test_commits_leave_the_log_and_a_thread_moves_it_into_the_file(tmp_path):
    db = tmp_path / "cp.db"
    store = await Store.open(f"sqlite:///{db}")
    try:
        await asyncio.sleep(CHECKPOINT_S * 1.5)  # the migrations' pages are in the file by now
        before = db.stat().st_size
        for i in range(600):  # well past SQLite's automatic threshold of 1,000 pages
            async with store.engine.begin() as conn:
                await conn.execute(settings.insert(), {"name": f"s{i}", "value": "x" * 8000, "updated_at": 0.0})
        assert db.stat().st_size == before  # every commit went to the log only
        await asyncio.sleep(CHECKPOINT_S * 2.5)
        assert db.stat().st_size > before + 600 * 8000
    finally:
        await store.close()
