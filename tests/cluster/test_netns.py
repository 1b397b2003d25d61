"""A cluster across a real network: two replicas (PostgreSQL + Redis) in the root namespace,
nodes and their engines each in a network namespace of their own (`tests/cluster/netns.py`).

Skips, saying why, when not root, when `ip netns` does not work, or when PostgreSQL or Redis
is absent."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import defaultdict

import httpx

from bench.chaos import Fleet, Request
from bench.chaos_engine import answer
from tests.cluster.netns import Net, audit, funded, network

CREDIT = "100.00"
CREDITED = 100 * 1_000_000


async def start_nodes(net: Net, urls: list[list[str]], **kw) -> None:
    for u in urls:
        node = net.add_node_ns(u)
        net.start_engine(node)
    for node in net.nodes:
        net.start_node(node, **kw)


class Clients:
    """Streaming clients that keep asking one replica until stopped; what each request saw."""

    def __init__(self, url: str, keys: list[tuple[str, str]], workers: int = 3) -> None:
        self.fleet = Fleet(url, keys, clients=workers, cancel=0.0)
        self.keys = keys
        self.workers = workers
        self.done: list[tuple[float, float, Request]] = []  # (sent at, answered at, request)
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> list[tuple[float, float, Request]]:
        self._stop.set()
        assert self._task is not None
        await self._task
        return self.done

    async def _run(self) -> None:
        async with httpx.AsyncClient(base_url=self.fleet.url, timeout=httpx.Timeout(60, connect=5)) as http:
            async def worker(w: int) -> None:
                i = 0
                while not self._stop.is_set():
                    key_id = self.keys[(w + i) % len(self.keys)][0]
                    req = Request(secrets.token_hex(8), 4 + (i * 7 + w) % 17, key_id)
                    sent = time.monotonic()
                    await self.fleet._one(http, req)
                    self.done.append((sent, time.monotonic(), req))
                    i += 1
                    await asyncio.sleep(0.05)

            await asyncio.gather(*(worker(w) for w in range(self.workers)))


def served(done: list[tuple[float, float, Request]]) -> list[Request]:
    return [r for _, _, r in done if r.outcome == "done"]


def assert_exact(done: list[tuple[float, float, Request]]) -> None:
    for _, _, r in done:
        if r.outcome == "done":
            assert r.text == answer(r.nonce, r.words), f"request {r.nonce}: {r.text[:60]!r}"


async def test_a_node_150_ms_away_streams_exactly_and_is_charged_its_usage(pg_url, redis_url, tmp_path):
    async with network(pg_url, redis_url, tmp_path) as net:
        node = net.add_node_ns([net.replica_url["a"]])
        net.start_engine(node)
        how = net.slow(node, 0.150, loss=0.01)
        net.start_node(node)

        async def on_a() -> bool:
            return (await net.online()).get("a") == 1

        await net.until(on_a, 40, "the slow node online at replica a")
        keys = await funded(net, 2, CREDIT)
        ttfts: list[float] = []
        results: list[tuple[Request, dict]] = []
        async with httpx.AsyncClient(timeout=60) as http:
            async def one(url: str, key: tuple[str, str], words: int) -> None:
                req = Request(secrets.token_hex(8), words, key[0])
                body = {"model": "chaos-model", "messages": [{"role": "user", "content": f"chaos {req.nonce} {words}"}],
                        "max_tokens": words, "stream": True, "stream_options": {"include_usage": True}}
                usage: dict = {}
                started = time.monotonic()
                async with http.stream("POST", url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key[1]}"}) as r:
                    assert r.status_code == 200, await r.aread()
                    async for line in r.aiter_lines():
                        if not line.startswith("data: ") or line == "data: [DONE]":
                            req.outcome = "done" if line == "data: [DONE]" else req.outcome
                            continue
                        data = json.loads(line[6:])
                        assert "error" not in data, data
                        req.job_id = data["id"]
                        for choice in data.get("choices") or []:
                            if choice["delta"].get("content") and not ttfts_seen[req.nonce]:
                                ttfts_seen[req.nonce] = True
                                ttfts.append(time.monotonic() - started)
                            req.text += choice["delta"].get("content") or ""
                        usage = data.get("usage") or usage
                results.append((req, usage))

            ttfts_seen: dict[str, bool] = defaultdict(bool)
            # Through the replica holding the node, and through the other (over Redis).
            await asyncio.gather(*(one(net.replica_url[r], keys[i % 2], 5 + 3 * i) for i, r in enumerate("ababab")))
        for req, usage in results:
            assert req.outcome == "done", req.nonce
            assert req.text == answer(req.nonce, req.words)  # the text is the engine's, byte for byte
            assert usage["completion_tokens"] == req.words  # the engine's usage reaches the client
        # The link was really slow: no first token sooner than the one-way delay.
        assert min(ttfts) >= 0.150, (how, ttfts)
        report = await audit(net, keys, CREDITED)
        assert report.problems == [], report.problems
        for req, usage in results:  # charged exactly what the engine reported
            receipt = report.receipts[req.job_id]
            assert json.loads(receipt["settlement"])["output_tokens"] == usage["completion_tokens"]
        print(f"delay by {how}; first tokens after {min(ttfts):.3f}-{max(ttfts):.3f} s")


async def serving(net, client_urls: list[str]) -> tuple[list, list]:
    """Two nodes on replica a, one on b (each knows both), and clients streaming through
    `client_urls`, for a moment, before the partition."""
    a, b = net.replica_url["a"], net.replica_url["b"]
    await start_nodes(net, [[a, b], [a, b], [b, a]])

    async def placed() -> bool:
        return await net.online() == {"a": 2, "b": 1}

    await net.until(placed, 40, "two nodes on a, one on b")
    keys = await funded(net, 3, CREDIT)
    clients = [Clients(url, keys) for url in client_urls]
    for c in clients:
        c.start()
    await asyncio.sleep(1.5)
    return keys, clients


async def test_a_partitioned_replicas_nodes_move_to_the_other_within_seconds(pg_url, redis_url, tmp_path):
    async with network(pg_url, redis_url, tmp_path) as net:
        a, b = net.replica_url["a"], net.replica_url["b"]
        keys, clients = await serving(net, [b, a])
        cut = time.monotonic()
        net.partition("a")

        async def moved() -> bool:
            return (await net.online()).get("b") == 3

        took = await net.until(moved, 30, "a's nodes reconnected to b")

        async def let_go() -> bool:  # a hears they moved: no 30 s of stale sockets counted online
            return await net.online() == {"a": 0, "b": 3}

        await net.until(let_go, 3, "a letting go of the nodes that moved")
        await asyncio.sleep(3)  # clients keep asking both replicas with every node on b
        done = [d for c in clients for d in await c.stop()]
        print(f"a's nodes online on b {took:.1f} s after the partition")
        assert took < 20
        assert_exact(done)
        # Served all along by b, and by a too (it reaches the moved nodes through b).
        after = [r for sent, _, r in done if sent > cut + took]
        assert after and all(r.outcome == "done" for r in after), [(r.outcome, r.error) for r in after if r.outcome != "done"]
        during = [(r.outcome, r.error) for sent, _, r in done if cut <= sent <= cut + took]
        assert sum(o == "done" for o, _ in during) >= len(during) // 2, during
        report = await audit(net, keys, CREDITED)
        assert report.problems == [], report.problems


async def test_healing_a_partition_runs_nothing_twice_and_the_books_balance(pg_url, redis_url, tmp_path):
    async with network(pg_url, redis_url, tmp_path) as net:
        a, b = net.replica_url["a"], net.replica_url["b"]
        keys, clients = await serving(net, [a, b])
        net.partition("a")

        async def moved() -> bool:
            return (await net.online()).get("b") == 3

        await net.until(moved, 30, "a's nodes reconnected to b")
        await asyncio.sleep(1)
        net.heal("a")

        async def once() -> bool:  # every node online exactly once, at b: a let go of the old sockets
            return await net.online() == {"a": 0, "b": 3}

        await net.until(once, 45, "a letting go of the sockets it lost")
        await asyncio.sleep(2)  # served with the partition healed
        done = [d for c in clients for d in await c.stop()]
        assert_exact(done)
        assert len(served(done)) > 20
        report = await audit(net, keys, CREDITED)
        assert report.problems == [], report.problems
        # Every engine run of a client's request is one of its job's attempts (canaries,
        # the control plane's own prompts, are not the clients').
        nonces = {json.loads(j["body"])["messages"][-1]["content"].split()[1] for j in report.jobs}
        assert sum(report.runs[n] for n in nonces) <= sum(j["attempts"] for j in report.jobs)
        async with net.admin("b") as c:  # the registry says online, whichever replica wrote last
            rows = (await c.get("/api/v1/nodes")).json()["data"]
        assert sorted(r["status"] for r in rows) == ["online"] * 3
