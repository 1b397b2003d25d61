"""The market end to end: several real node daemons (fake engines) behind a real control plane."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from typing import Any

import pytest

from infernet.backends.fake import FakeBackend
from infernet.control import Settings, schemas
from infernet.control.dispatch.driver import INTERNAL_KEY_ID
from infernet.control.dispatch.router import TIERS
from infernet.control.health.circuit import BreakerPolicy
from infernet.control.health.verify import VerifyPolicy
from infernet.control.store import Store
from infernet.node.daemon import Node
from infernet.protocol import keys
from infernet.protocol.messages import Done, Job
from tests.harness import Network

CHAT = "/v1/chat/completions"


def quiet(**kw: Any) -> Settings:
    """Test settings: fast heartbeats, fixed randomness, no canaries unless asked for."""
    kw.setdefault("verify", VerifyPolicy(canary_rate=0))
    return Settings(heartbeat_s=0.5, seed=11, **kw)


def ask(text: str = "x", **extra: Any) -> dict[str, Any]:
    return {"model": "fake-model", "messages": [{"role": "user", "content": text}], **extra}


class Recording(FakeBackend):
    """A fake engine that keeps every request body it was given, in order."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.bodies: list[dict[str, Any]] = []

    def _stream(self, body: dict[str, Any]):  # type: ignore[override]
        self.bodies.append(body)
        return super()._stream(body)


async def client_jobs(net: Network) -> list[dict[str, Any]]:
    rows = await net.cp.store.jobs.list(limit=10_000)
    return [r for r in rows if r["key_id"] != INTERNAL_KEY_ID]


# -- routing ------------------------------------------------------------------------------


async def test_higher_tiers_get_more_of_the_jobs_under_load(tmp_path):
    # One node per tier; engines as fast as the reference's table says each tier is.
    per_token = {">=48gb": 0.002, ">=24gb": 0.004, ">=12gb": 0.006, ">=8gb": 0.012, "cpu": 0.03}
    async with Network.start(tmp=tmp_path, settings=quiet()) as net:
        tier_of = {}
        for tier in TIERS:
            n = await net.add_node(FakeBackend(reply=" ".join(["w"] * 12), delay_s=per_token[tier], slots=2), tier=tier)
            tier_of[n.node.identity.pubkey] = tier
        async with net.client() as c:
            async def worker(k: int) -> None:
                for i in range(12):
                    r = await c.post(CHAT, json=ask(f"{k} {i}"))
                    assert r.status_code == 200, r.text

            await asyncio.gather(*(worker(k) for k in range(7)))  # 7 in flight against 10 slots
        share = Counter(tier_of[j["node_id"]] for j in await client_jobs(net))
        print("jobs per tier:", dict(share))
        assert sum(share.values()) == 84
        counts = [share[t] for t in TIERS]
        assert counts == sorted(counts, reverse=True), share
        assert share[">=48gb"] >= 3 * max(1, share["cpu"])


async def test_constraints_in_the_infernet_object(tmp_path):
    async with Network.start(tmp=tmp_path, settings=quiet()) as net:
        big = await net.add_node(Recording(reply="big"), tier=">=24gb")
        small = await net.add_node(Recording(reply="small"), tier="cpu")
        async with net.client() as c:
            r = await c.post(CHAT, json=ask(infernet={"min_tier": ">=24gb"}))
            assert r.json()["choices"][0]["message"]["content"] == "big"
            r = await c.post(CHAT, json=ask(infernet={"node": small.node.identity.npub}))
            assert r.json()["choices"][0]["message"]["content"] == "small"
            r = await c.post("/api/v1/jobs", json=ask(infernet={"node": small.node.identity.pubkey}))
            assert r.status_code == 202
            await net.wait_for(lambda: not net.cp.driver.jobs)
            r = await c.post(CHAT, json=ask(infernet={"min_tier": ">=48gb"}))
            assert r.status_code == 503 and r.json()["error"]["code"] == "no_eligible_node"
            for bad, param in (({"min_tier": "huge"}, "infernet.min_tier"), ({"max_price": -1}, "infernet.max_price"), ({"node": "zz"}, "infernet.node"), ({"colour": "red"}, "infernet")):
                r = await c.post(CHAT, json=ask(infernet=bad))
                assert r.status_code == 400 and r.json()["error"]["param"] == param, (bad, r.text)
        # The node never sees how it was chosen.
        assert all("infernet" not in b for b in big.node.backend.bodies + small.node.backend.bodies)
        assert len(small.node.backend.bodies) == 2


# -- queueing -----------------------------------------------------------------------------


async def test_waiting_jobs_are_served_round_robin_across_keys(tmp_path):
    async with Network.start(tmp=tmp_path, settings=quiet()) as net:
        engine = Recording(reply="a b c", delay_s=0.02, slots=1)
        await net.add_node(engine)
        api_keys = [await net.funded_key(n) for n in ("alice", "bob")]
        async with net.client(api_keys[0]) as alice, net.client(api_keys[1]) as bob:
            for i in range(6):
                assert (await alice.post("/api/v1/jobs", json=ask(f"A{i}"))).status_code == 202
            for i in range(2):
                assert (await bob.post("/api/v1/jobs", json=ask(f"B{i}"))).status_code == 202
            await net.wait_for(lambda: len(engine.bodies) == 8 and not net.cp.driver.jobs)
        order = [b["messages"][0]["content"] for b in engine.bodies]
        assert order == ["A0", "A1", "B0", "A2", "B1", "A3", "A4", "A5"]


async def test_a_full_queue_refuses_at_once_and_a_deadline_gives_429(tmp_path):
    async with Network.start(tmp=tmp_path, settings=quiet(max_queued_per_key=2, queue_timeout_s=1.0)) as net:
        await net.add_node(FakeBackend(reply=" ".join(["w"] * 200), delay_s=0.01, slots=1))
        async with net.client() as c:
            running = asyncio.create_task(c.post(CHAT, json=ask("first")))
            await net.wait_for(lambda: any(n.active for n in net.cp.sessions.nodes.values()))
            waiting = [asyncio.create_task(c.post(CHAT, json=ask(f"w{i}"))) for i in range(2)]
            await net.wait_for(lambda: len(net.cp.placement.queue) == 2)
            r = await c.post(CHAT, json=ask("one too many"))
            assert r.status_code == 429 and "too many jobs are waiting" in r.json()["error"]["message"]
            assert int(r.headers["retry-after"]) >= 1
            for t in waiting:  # these waited up to the deadline, then got a 429 too
                r = await t
                assert r.status_code == 429 and r.json()["error"]["code"] == "over_capacity" and int(r.headers["retry-after"]) >= 1
            assert (await running).status_code == 200
            assert len(net.cp.placement.queue) == 0


# -- claims and deliveries ----------------------------------------------------------------


def _pg_url() -> str | None:
    url = os.environ.get("INFERNET_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        return None
    return url


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_racing_claimers_on_one_store_never_both_win(tmp_path, backend):
    url = f"sqlite:///{tmp_path / 'race.db'}" if backend == "sqlite" else _pg_url()
    try:
        stores = [await Store.open(url), await Store.open(url)]
    except OSError as exc:
        pytest.skip(f"PostgreSQL not reachable at {url}: {exc}")
    try:
        for round_ in range(5):
            job_id = f"job-race-{os.urandom(6).hex()}"
            await stores[0].jobs.create(id=job_id, key_id="k", kind="chat", model="m", status="queued", body={})
            claims = [stores[i % 2].jobs.transition(job_id, ("queued",), "assigned", node_id=f"node{i}") for i in range(12)]
            won = [i for i, ok in enumerate(await asyncio.gather(*claims)) if ok]
            assert len(won) == 1, (round_, won)
            row = await stores[1].jobs.get(job_id)
            assert row["status"] == "assigned" and row["node_id"] == f"node{won[0]}"
    finally:
        for s in stores:
            await s.close()


async def test_two_control_planes_on_one_store_run_a_job_once(tmp_path, pg_url):
    url = pg_url  # one SQLite file is one control plane's; sharing a store is a cluster's PostgreSQL
    async with Network.start(db_url=url, tmp=tmp_path, settings=quiet()) as one, Network.start(db_url=url, tmp=tmp_path, settings=quiet()) as two:
        engines = [FakeBackend(reply="hello there", delay_s=0.01), FakeBackend(reply="hello there", delay_s=0.01)]
        await one.add_node(engines[0])
        await two.add_node(engines[1])
        for _ in range(5):
            job_id = f"chatcmpl-{os.urandom(6).hex()}"
            await one.cp.store.jobs.create(id=job_id, key_id="k", kind="chat", model="fake-model", status="queued", body=ask())
            row = await one.cp.store.jobs.get(job_id)
            lives = [one.cp.driver.adopt(row), two.cp.driver.adopt(row)]
            await asyncio.gather(*(live.finished.wait() for live in lives))
            statuses = sorted(j.status for j in lives)
            assert statuses == ["completed", "failed"], statuses
            await one.cp.driver.settled()
            await two.cp.driver.settled()
            assert (await one.cp.store.jobs.get(job_id))["status"] == "completed"
        assert engines[0].calls + engines[1].calls == 5
        assert not any(n.active for net in (one, two) for n in net.cp.sessions.nodes.values())


async def test_a_duplicate_job_delivery_is_ignored_by_the_node(tmp_path):
    async with Network.start(tmp=tmp_path, settings=quiet()) as net:
        engine = FakeBackend(reply="one two three four five", delay_s=0.05)
        await net.add_node(engine)
        async with net.client() as c:
            job_id = (await c.post("/api/v1/jobs", json=ask())).json()["id"]
            await net.wait_for(lambda: engine.calls == 1)
            conn = next(iter(net.cp.sessions.nodes.values()))
            frame = Job(job_id=job_id, kind="chat", body=ask())
            await conn.send(frame)  # again while it runs
            await net.wait_for(lambda: not net.cp.driver.jobs)
            await conn.send(frame)  # and again after it finished
            r = await c.post(CHAT, json=ask("next"))
            assert r.status_code == 200
            job = (await c.get(f"/api/v1/jobs/{job_id}")).json()
        assert engine.calls == 2  # the job once, then "next"
        assert job["status"] == "completed" and job["usage"]["completion_tokens"] == 5


class Replaying(Node):
    """A node that sends every Done frame twice (a replay within a valid signed session)."""

    def _send(self, frame: Any) -> None:
        super()._send(frame)
        if isinstance(frame, Done):
            super()._send(frame)


async def test_a_replayed_done_frame_is_ignored(tmp_path):
    async with Network.start(tmp=tmp_path, settings=quiet()) as net:
        engine = FakeBackend(reply="a b c")
        node = Replaying(net.url, keys.Identity.generate(), engine)
        stop = asyncio.Event()
        task = asyncio.create_task(node.run(stop))
        try:
            await net.wait_for(lambda: node.identity.pubkey in net.cp.sessions.nodes)
            async with net.client() as c:
                for i in range(3):
                    r = await c.post(CHAT, json=ask(f"p{i}"))
                    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3
                jobs = (await c.get("/api/v1/jobs")).json()["data"]
            assert [j["status"] for j in jobs] == ["completed"] * 3
            assert not net.cp.sessions.nodes[node.identity.pubkey].active
        finally:
            stop.set()
            await task


# -- faults -------------------------------------------------------------------------------


async def test_nodes_dying_before_the_first_token_are_invisible_to_the_client(tmp_path):
    async with Network.start(tmp=tmp_path, settings=quiet()) as net:
        doomed = await net.add_node(FakeBackend(reply="late", delay_s=2.0), name="doomed")
        crashing = FakeBackend(fail="engine crashed")
        await net.add_node(crashing, name="crashing")
        good = FakeBackend(reply="the answer")
        await net.add_node(good, name="good")
        async with net.client() as c:
            task = asyncio.create_task(c.post(CHAT, json=ask(infernet={"node": doomed.node.identity.pubkey})))
            await net.wait_for(lambda: doomed.node.status.active == 1)
            await doomed.kill()
            r = await task
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "the answer"
            job = (await c.get(f"/api/v1/jobs/{r.json()['id']}")).json()
        assert job["status"] == "completed" and job["attempts"] >= 2 and job["usage"]["completion_tokens"] == 2
        assert good.calls == 1  # run to completion exactly once
        assert crashing.calls <= 1


async def test_after_the_first_token_a_failure_is_a_clean_error_metered_for_what_was_delivered(tmp_path):
    async with Network.start(tmp=tmp_path, settings=quiet()) as net:
        other = FakeBackend(reply="never used")
        await net.add_node(FakeBackend(reply="a b c d e f g h", fail="GPU fell off the bus", fail_after=3, delay_s=0.01), tier=">=48gb")
        await net.add_node(other, tier="cpu")
        async with net.client() as c:
            async with c.stream("POST", CHAT, json=ask(stream=True)) as r:
                events = [json.loads(line[6:]) async for line in r.aiter_lines() if line.startswith("data: ") and line != "data: [DONE]"]
            assert events[-1]["error"]["message"] == "GPU fell off the bus"
            text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e.get("choices"))
            assert text == "a b c"
            job = (await c.get(f"/api/v1/jobs/{events[0]['id']}")).json()
        assert job["status"] == "failed"
        assert job["usage"]["completion_tokens"] == 3  # the three words delivered, nothing more
        assert other.calls == 0  # never silently retried after the client saw tokens


async def test_a_node_vanishing_mid_stream_is_not_charged_for(tmp_path):
    async with Network.start(tmp=tmp_path, settings=quiet()) as net:
        node = await net.add_node(FakeBackend(reply=" ".join(["w"] * 100), delay_s=0.02))
        async with net.client() as c:
            async with c.stream("POST", CHAT, json=ask(stream=True)) as r:
                events = []
                async for line in r.aiter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        events.append(json.loads(line[6:]))
                        if len(events) == 4:
                            await node.kill()
            job = (await c.get(f"/api/v1/jobs/{events[0]['id']}")).json()
        assert events[-1]["error"]["code"] == "node_lost"
        assert job["status"] == "failed" and job["usage"] is None


async def test_a_silent_node_loses_its_jobs_goes_offline_and_comes_back(tmp_path):
    async with Network.start(tmp=tmp_path, settings=quiet(missed_heartbeats=3)) as net:
        hung = await net.add_node(FakeBackend(reply=" ".join(["slow"] * 20), delay_s=0.2), name="hung")
        backup = FakeBackend(reply="from the backup")
        await net.add_node(backup, name="backup")
        hung_id = hung.node.identity.pubkey
        async with net.client() as c:
            task = asyncio.create_task(c.post(CHAT, json=ask(infernet={"node": hung_id})))
            await net.wait_for(lambda: hung.node.status.active == 1)
            hung.node.hold()  # connected, but not a frame more: no tokens, no heartbeats
            r = await task
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "from the backup"
            nodes = {n["id"]: n for n in (await c.get("/api/v1/nodes")).json()["data"]}
            assert nodes[hung_id]["status"] == "offline"
            job = (await c.get(f"/api/v1/jobs/{r.json()['id']}")).json()
            assert job["status"] == "completed" and job["attempts"] == 2
            await net.wait_for(lambda: hung.node.backend.cancelled == 1)  # its copy was stopped
            hung.node.release()
            await net.wait_for(lambda: hung_id in net.cp.sessions.nodes)
            r = await c.post(CHAT, json=ask(max_tokens=2, infernet={"node": hung_id}))
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "slow slow"
            nodes = {n["id"]: n for n in (await c.get("/api/v1/nodes")).json()["data"]}
            assert nodes[hung_id]["status"] == "online"
        assert backup.calls == 1


async def test_a_failing_node_is_taken_out_of_rotation_and_a_probe_brings_it_back(tmp_path):
    async with Network.start(tmp=tmp_path, settings=quiet(breaker=BreakerPolicy(threshold=3, cooldown_s=0.5))) as net:
        flaky_engine = FakeBackend(reply="flaky ok", fail="CUDA out of memory")
        flaky = await net.add_node(flaky_engine, tier=">=48gb")
        await net.add_node(FakeBackend(reply="steady"), tier="cpu")
        fid = flaky.node.identity.pubkey
        prefer_flaky = ask(infernet={"node": fid})
        async with net.client() as c:
            for _ in range(6):  # each failure is retried on the other node, invisibly
                r = await c.post(CHAT, json=prefer_flaky)
                assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "steady"
            assert flaky_engine.calls == 3  # three strikes, then out of rotation
            assert net.cp.health.breaker(fid).state == "open"
            assert net.cp.placement.fleet.nodes[fid].reputation < net.cp.health.reputation.of("new").score(0)
            flaky_engine.fail = None  # it recovers
            await asyncio.sleep(0.6)  # the cooldown runs out
            r = await c.post(CHAT, json=prefer_flaky)
            assert r.json()["choices"][0]["message"]["content"] == "flaky ok"  # the probe
            assert net.cp.health.breaker(fid).state == "closed"
            r = await c.post(CHAT, json=prefer_flaky)
            assert r.json()["choices"][0]["message"]["content"] == "flaky ok"


# -- idempotency --------------------------------------------------------------------------


async def test_idempotency_key_returns_the_same_job_even_under_concurrent_retries(tmp_path):
    async with Network.start(tmp=tmp_path, settings=quiet()) as net:
        engine = FakeBackend(reply="once", delay_s=0.01)
        await net.add_node(engine)
        async with net.client() as c:
            h = {"Idempotency-Key": "order-42"}
            first = await c.post("/api/v1/jobs", json=ask("hi"), headers=h)
            again = await c.post("/api/v1/jobs", json=ask("hi"), headers=h)
            assert first.status_code == 202 and again.status_code == 200
            assert first.json()["id"] == again.json()["id"]
            burst = await asyncio.gather(*(c.post("/api/v1/jobs", json=ask("burst"), headers={"Idempotency-Key": "burst-1"}) for _ in range(10)))
            ids = {r.json()["id"] for r in burst}
            assert len(ids) == 1 and sorted(r.status_code for r in burst) == [200] * 9 + [202]
            conflict = await c.post("/api/v1/jobs", json=ask("something else"), headers=h)
            assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency_key_reused"
            other_key = await net.funded_key("other")
        async with net.client(other_key) as c2:
            theirs = await c2.post("/api/v1/jobs", json=ask("hi"), headers=h)
            assert theirs.status_code == 202 and theirs.json()["id"] != first.json()["id"]
        await net.wait_for(lambda: not net.cp.driver.jobs)
        assert engine.calls == 3  # "hi", "burst", and the other key's "hi"
        assert len(await client_jobs(net)) == 3


# -- verification -------------------------------------------------------------------------


async def test_a_node_faking_its_engine_is_caught_by_canaries_and_loses_its_share(tmp_path):
    reference = keys.Identity.generate()
    policy = VerifyPolicy(canary_rate=0.5, trusted_nodes=frozenset({reference.pubkey}))
    async with Network.start(tmp=tmp_path, settings=quiet(verify=policy)) as net:
        await net.add_node(Recording(), name="trusted", identity=reference)
        honest = await net.add_node(Recording(), name="honest")
        faker = await net.add_node(Recording(reply="Sure! Here is a confident answer I did not compute."), name="faker", tier=">=48gb")
        fid = faker.node.identity.pubkey
        async with net.client() as c:
            caught_after = None
            for i in range(40):
                r = await c.post(CHAT, json=ask(f"question {i}"))
                assert r.status_code == 200
                await net.wait_for(lambda: not net.cp.driver.busy)  # jobs and checks all done
                if net.cp.driver.verifier.caught.get(fid):
                    caught_after = i + 1
                    break
            print("faker caught after", caught_after, "client jobs")
            assert caught_after is not None and caught_after <= 20, caught_after
            assert net.cp.health.reputation.of(fid).score(0) < 0.15
            assert net.cp.health.breaker(fid).state == "open"
            before = len(faker.node.backend.bodies)
            for i in range(10):
                assert (await c.post(CHAT, json=ask(f"after {i}"))).status_code == 200
            await net.wait_for(lambda: not net.cp.driver.busy)  # jobs and checks all done
            assert len(faker.node.backend.bodies) == before  # out of rotation
            mine = (await c.get("/api/v1/jobs")).json()["data"]
        honest_id = honest.node.identity.pubkey
        assert not net.cp.driver.verifier.caught.get(honest_id)
        # Canaries are the control plane's own jobs: not in the client's list, not on its key.
        assert len(mine) == caught_after + 10
        internal = [j for j in await net.cp.store.jobs.list(limit=1000) if j["key_id"] == INTERNAL_KEY_ID]
        assert internal and all(j["id"].startswith("chatcmpl-") for j in internal)
        # To a node a canary is an ordinary chat request: exactly the body the control plane
        # makes of a client's request with the same fields.
        canary = next(b for b in faker.node.backend.bodies if b.get("seed") == net.cp.driver.verifier.policy.seed)
        as_client = schemas.client_body(schemas.parse(json.dumps(canary).encode(), schemas.ChatRequest))
        assert canary == as_client
        assert set(canary) == set(faker.node.backend.bodies[0]) | {"seed", "max_tokens", "temperature"}


async def test_a_sampled_client_job_is_duplicated_to_a_trusted_node_and_compared(tmp_path):
    reference = keys.Identity.generate()
    policy = VerifyPolicy(canary_rate=0, shadow_rate=1.0, trusted_nodes=frozenset({reference.pubkey}))
    async with Network.start(tmp=tmp_path, settings=quiet(verify=policy)) as net:
        trusted = await net.add_node(Recording(), name="trusted", tier="cpu", identity=reference)
        faker = await net.add_node(Recording(reply="made up"), name="faker", tier=">=48gb")
        async with net.client() as c:
            r = await c.post(CHAT, json=ask("deterministic please", temperature=0))
            assert r.json()["choices"][0]["message"]["content"] == "made up"  # the client already has its answer
            await net.wait_for(lambda: not net.cp.driver.busy)  # jobs and checks all done
            r = await c.post(CHAT, json=ask("sampled at temperature 1", temperature=1))
            await net.wait_for(lambda: not net.cp.driver.busy)  # jobs and checks all done
        assert net.cp.driver.verifier.caught == {faker.node.identity.pubkey: 1}
        assert trusted.node.backend.bodies[0]["messages"][0]["content"] == "deterministic please"
        # Only deterministic jobs are duplicated; the second one went to the trusted node alone.
        assert len(trusted.node.backend.bodies) == 2
