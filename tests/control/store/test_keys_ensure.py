"""Every replica of a cluster seeds the admin key at start, and they start together."""

from __future__ import annotations

from infernet.control.store import Store


async def test_ensuring_a_key_another_replica_inserted_a_moment_ago_returns_it(db_url):
    mine, theirs = await Store.open(db_url), await Store.open(db_url)
    try:
        made = await theirs.keys.ensure("inf-admin-key-0123456789abcdef", "admin", "admin")
        looked: list[bool] = []
        real = mine.keys.lookup

        async def late_lookup(plaintext, *, cache=True):
            if not looked:  # our look came just before their insert
                looked.append(True)
                return None
            return await real(plaintext, cache=cache)

        mine.keys.lookup = late_lookup
        got = await mine.keys.ensure("inf-admin-key-0123456789abcdef", "admin", "admin")
        assert got.id == made.id and got.role == "admin"
    finally:
        await mine.close()
        await theirs.close()
