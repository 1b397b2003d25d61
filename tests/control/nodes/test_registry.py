"""The node registry is written behind the hellos: a node serves while the database is slow,
and a burst of hellos costs a statement per 500 nodes, not one each."""

from __future__ import annotations

import asyncio

from infernet.backends.fake import FakeBackend
from infernet.control.bus import LocalBus
from infernet.control.nodes.sessions import NodeSessions
from tests.control.nodes.test_moved import conn
from tests.harness import Network


async def test_a_node_serves_while_its_registry_write_waits_on_the_database(tmp_path):
    async with Network.start(tmp=tmp_path) as net:
        repo = net.cp.store.nodes
        release = asyncio.Event()
        for name in ("upsert", "upsert_many"):  # whichever this version writes with
            real = getattr(repo, name, None)
            if real is not None:
                async def stuck(*a, _real=real, **kw):
                    await release.wait()
                    return await _real(*a, **kw)

                setattr(repo, name, stuck)
        await net.add_node(FakeBackend(reply="served"))
        async with net.client() as c:
            r = await asyncio.wait_for(c.post("/v1/chat/completions", json={"model": "fake-model", "messages": [{"role": "user", "content": "x"}]}), 10)
            assert r.json()["choices"][0]["message"]["content"] == "served"
            release.set()
            rows = (await c.get("/api/v1/nodes")).json()["data"]
        assert [row["status"] for row in rows] == ["online"]


class Repo:
    def __init__(self) -> None:
        self.calls: list[int] = []

        self.offline: list[list[str]] = []
        self.rows: list[dict] = []

    async def upsert_many(self, rows: list[dict]) -> None:
        if rows:
            self.calls.append(len(rows))
            self.rows += rows

    async def set_offline(self, node_ids: list[str]) -> None:
        if node_ids:
            self.offline.append(node_ids)


class Store:
    def __init__(self) -> None:
        self.nodes = Repo()


async def test_a_burst_of_hellos_is_registered_500_nodes_a_statement():
    store = Store()
    sessions = NodeSessions(store, LocalBus("r-a"))  # type: ignore[arg-type]
    for i in range(1200):
        sessions._register(conn(f"{i:064x}", b"\x01" * 16, "r-a"))
    await sessions.registry.flush()
    assert store.nodes.calls == [500, 500, 200]
    await sessions.aclose()


async def test_a_burst_of_disconnects_is_one_statement_and_the_last_state_of_a_node_wins():
    store = Store()
    sessions = NodeSessions(store, LocalBus("r-a"))  # type: ignore[arg-type]
    for i in range(300):
        sessions.registry.offline(f"{i:064x}")  # registered long ago; they all drop at once
    late = conn("f" * 64, b"\x01" * 16, "r-a")
    sessions._register(late)
    sessions.registry.offline(late.id)  # online and gone again before the writer got to it
    back = conn("e" * 64, b"\x01" * 16, "r-a")
    sessions.registry.offline(back.id)
    sessions._register(back)  # gone, then back
    await sessions.registry.flush()
    assert [len(b) for b in store.nodes.offline] == [300]
    assert {r["id"]: r["status"] for r in store.nodes.rows} == {late.id: "offline", back.id: "online"}
    await sessions.aclose()
