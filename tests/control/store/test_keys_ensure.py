"""Seeding the admin key when another replica seeds it at the same moment."""

from __future__ import annotations

from infernet.control.store import Store


async def test_ensure_takes_the_row_another_replica_inserted_first(tmp_path):
    store = await Store.open(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        first = await store.keys.ensure("inf-admin-" + "1" * 20, "admin", "admin")
        real = store.keys.lookup
        calls = []

        async def raced(plaintext, *, cache=True):  # our look-up ran before the other's insert
            calls.append(plaintext)
            return None if len(calls) == 1 else await real(plaintext, cache=cache)

        store.keys.lookup = raced
        again = await store.keys.ensure("inf-admin-" + "1" * 20, "admin", "admin")
        assert again.id == first.id and len(calls) == 2
    finally:
        await store.close()


async def test_concurrent_lookups_of_one_key_ask_the_database_once(tmp_path):
    import asyncio

    store = await Store.open(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        rec, plaintext = await store.keys.create("k")
        store.keys.forget()
        asked = []
        real = store.keys._query

        async def query(digest, now):
            asked.append(digest)
            await asyncio.sleep(0.05)  # a slow database: every request arrives meanwhile
            return await real(digest, now)

        store.keys._query = query
        got = await asyncio.gather(*(store.keys.lookup(plaintext) for _ in range(200)))
        assert {g.id for g in got} == {rec.id} and len(asked) == 1
    finally:
        await store.close()


async def test_concurrent_admissions_on_one_key_read_its_limits_once(tmp_path):
    import asyncio

    from infernet.control.money.billing import Billing
    from infernet.protocol import keys

    store = await Store.open(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        rec, _ = await store.keys.create("k")
        billing = Billing(store, keys.Identity.generate())
        reads = []
        real = store.keys.get

        async def get(key_id):
            reads.append(key_id)
            await asyncio.sleep(0.05)
            return await real(key_id)

        store.keys.get = get
        got = await asyncio.gather(*(billing._key(rec.id) for _ in range(200)))
        assert len(set(got)) == 1 and reads == [rec.id]
    finally:
        await store.close()
