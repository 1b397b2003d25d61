"""Toward internet scale, by simulation: many light nodes on a cluster of replicas.

    python -m bench.fleet                              # 10,000 nodes, 2 replicas, 1,000 streams
    python -m bench.fleet --nodes 2000 --streams 300   # what fits a small machine in a minute

Replicas are real `infernet control-plane serve` processes on a fresh PostgreSQL database
and a Redis namespace of their own (both dropped afterwards). The nodes are light: each is a
real, signed WebSocket session (`sign_request` on the upgrade, the signed hello, every frame
MAC'd in its session, websockets pings and a heartbeat at the interval the replica asks),
many to a process (`--sims` processes of `python -m bench.fleet sim`), each its own
identity. A node is also its own slow engine: a job gets one token every `--token-s`.

Measured, in order: how long the fleet takes to connect; at rest (`--rest` s, only pings
and heartbeats) each replica's RSS and CPU time, PostgreSQL's commits and row writes
(`pg_stat_database` of the bench's database) and Redis's commands (`INFO commandstats`:
the whole server's, so anything else using that Redis counts too); `--streams` streams open
at once through the replicas (RSS again); routing over the whole fleet as a replica holds
it (`Placement.pick` and the maintenance `tick`, in this process, on a fleet of the same
size); and the time the fleet takes to settle when a replica is SIGKILLed (until every node
is online on the others).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
ADMIN_KEY = "inf-fleet-admin-" + "0" * 16
MODEL = "fleet-model"
CAPACITY = 4
PG = os.environ.get("INFERNET_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("INFERNET_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERNET_")}
    return {**env, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", **extra}


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it


# -- the simulated nodes (one process holds many) ------------------------------------------------


async def sim(urls: list[str], first: int, count: int, token_s: float, connect_at_once: int) -> None:
    import msgspec
    import websockets

    from infernet.node.daemon import CLOSE_S, CONNECT_PATH, PING_S, ws_url
    from infernet.protocol import auth, keys, receipts
    from infernet.protocol.messages import Accept, Cancel, Done, Heartbeat, Hello, Job, ModelAd, Tokens, Usage, Welcome, control_decoder, encode

    gate = asyncio.Semaphore(connect_at_once)  # a fleet connecting at once, but not all in one tick
    online = 0

    async def node(i: int) -> None:
        nonlocal online
        ident = keys.Identity.generate()
        at = i % len(urls)  # spread over the replicas; the others are its fallbacks, in order
        while True:
            url = urls[at % len(urls)]
            connected = False
            try:
                async with gate:
                    ws = await websockets.connect(
                        ws_url(url), additional_headers={auth.AUTH_HEADER: auth.sign_request(ident, "GET", CONNECT_PATH)},
                        max_size=2**24, open_timeout=60, compression=None, ping_interval=PING_S, ping_timeout=PING_S, close_timeout=CLOSE_S,
                    )
                    welcome = control_decoder.decode(await ws.recv())
                    assert isinstance(welcome, Welcome)
                    signer = auth.FrameSigner(ident, bytes.fromhex(welcome.session), welcome.ephemeral)
                    await ws.send(signer.seal_signed(encode(Hello(
                        pubkey=ident.pubkey, backend="sim", models=[ModelAd(name=MODEL)], capacity=CAPACITY, tier="cpu", name=f"sim{i}",
                    ))))
                connected = True
                online += 1
                lock = asyncio.Lock()  # one frame at a time: the MAC's sequence is the send order
                jobs: dict[str, asyncio.Task[None]] = {}

                async def send(frame: msgspec.Struct) -> None:
                    async with lock:
                        await ws.send(signer.seal(encode(frame)))

                async def run(job: Job) -> None:
                    words = int(job.body.get("max_tokens") or 10)
                    await send(Accept(job_id=job.job_id))
                    try:
                        for w in range(words):
                            await asyncio.sleep(token_s)
                            await send(Tokens(job_id=job.job_id, text=f" w{w}"))
                        finish = "stop"
                    except asyncio.CancelledError:
                        finish = "cancelled"
                    usage = Usage(4, words)
                    terms = job.receipt
                    if terms and terms.get("node_pubkey") == ident.pubkey:
                        body = receipts.complete(terms, usage.prompt_tokens, usage.completion_tokens, int(time.time()))
                        await send(Done(job_id=job.job_id, usage=usage, finish_reason=finish, receipt=body, signature=receipts.sign(ident, body)))
                    else:
                        await send(Done(job_id=job.job_id, usage=usage, finish_reason=finish))

                async def beat() -> None:
                    while True:
                        await asyncio.sleep(welcome.heartbeat_s)
                        await send(Heartbeat(active=len(jobs)))

                beater = asyncio.create_task(beat())
                try:
                    async for raw in ws:
                        frame = control_decoder.decode(raw)
                        if isinstance(frame, Job):
                            task = asyncio.create_task(run(frame))
                            jobs[frame.job_id] = task
                            task.add_done_callback(lambda _t, j=frame.job_id: jobs.pop(j, None))
                        elif isinstance(frame, Cancel) and frame.job_id in jobs:
                            jobs[frame.job_id].cancel()
                finally:
                    beater.cancel()
                    for task in jobs.values():
                        task.cancel()
            except (OSError, asyncio.TimeoutError, websockets.WebSocketException, msgspec.DecodeError, AssertionError):
                pass
            finally:
                if connected:
                    online -= 1
            at += 1  # the next replica at once, as the daemon does; a little jitter so a fleet does not stampede
            await asyncio.sleep(random.random() * 0.5)

    async def report() -> None:
        while True:
            print(json.dumps({"online": online}), flush=True)
            await asyncio.sleep(1)

    await asyncio.gather(report(), *(node(i) for i in range(first, first + count)))


# -- the cluster -------------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Cluster:
    replicas: int
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="infernet-fleet-")))
    db: str = ""
    redis: str = ""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    sims: list[subprocess.Popen[bytes]] = field(default_factory=list)

    async def start(self) -> None:
        import asyncpg

        name = "infernet_fleet_" + secrets.token_hex(4)
        admin = await asyncpg.connect(PG.replace("postgresql://", "postgres://"), timeout=5)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        self.db = PG.rsplit("/", 1)[0] + "/" + name
        self.redis = f"{REDIS}#infernet-fleet-{secrets.token_hex(4)}"
        res = subprocess.run([sys.executable, "-m", "infernet", "control-plane", "migrate", "--db", self.db], cwd=ROOT, env=_env(), capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"migrate failed: {res.stdout}{res.stderr}")
        (self.dir / "platform").mkdir()
        for r in range(self.replicas):
            port = _free_port()
            log = open(self.dir / f"replica{r}.log", "ab")  # noqa: SIM115 - the process holds it
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "infernet", "control-plane", "serve", "--db", self.db, "--redis", self.redis,
                 "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(self.dir / "platform")],
                cwd=ROOT, env=_env(INFERNET_API_KEY=ADMIN_KEY), stdout=log, stderr=subprocess.STDOUT,
            ))
            self.urls.append(f"http://127.0.0.1:{port}")
        async with httpx.AsyncClient(timeout=3) as c:
            for url, proc in zip(self.urls, self.procs):
                for _ in range(600):
                    with contextlib.suppress(httpx.HTTPError):
                        if (await c.get(url + "/healthz")).status_code == 200:
                            break
                    if proc.poll() is not None:
                        raise SystemExit(f"a replica exited; see {self.dir}")
                    await asyncio.sleep(0.1)

    def start_sims(self, nodes: int, sims: int, token_s: float, connect_at_once: int) -> None:
        per = -(-nodes // sims)
        for s in range(sims):
            count = min(per, nodes - s * per)
            # Each sim lists the replicas rotated, so the fleet spreads over all of them.
            urls = self.urls[s % len(self.urls):] + self.urls[: s % len(self.urls)]
            self.sims.append(subprocess.Popen(
                [sys.executable, "-m", "bench.fleet", "sim", ",".join(urls), str(s * per), str(count), str(token_s), str(connect_at_once)],
                cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=open(self.dir / f"sim{s}.log", "ab"),  # noqa: SIM115
            ))

    async def online(self) -> list[int]:
        out = []
        async with httpx.AsyncClient(timeout=10) as c:
            for url, proc in zip(self.urls, self.procs):
                if proc.poll() is not None:
                    out.append(0)
                    continue
                try:
                    out.append((await c.get(url + "/healthz")).json()["nodes"])
                except (httpx.HTTPError, ValueError, KeyError):
                    out.append(0)
        return out

    async def close(self) -> None:
        for proc in [*self.sims, *self.procs]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self.sims, *self.procs]:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        import asyncpg
        import redis.asyncio as aioredis

        if self.db:
            admin = await asyncpg.connect(PG.replace("postgresql://", "postgres://"), timeout=5)
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.db.rsplit("/", 1)[1]}" WITH (FORCE)')
            await admin.close()
        if self.redis:
            r = aioredis.Redis.from_url(REDIS)
            prefix = self.redis.partition("#")[2]
            async for key in r.scan_iter(match=prefix + ":*", count=1000):
                await r.delete(key)
            await r.aclose()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- what is measured ------------------------------------------------------------------------------


async def pg_counts(db: str) -> tuple[int, int]:
    import asyncpg

    conn = await asyncpg.connect(db.replace("postgresql://", "postgres://"))
    try:
        row = await conn.fetchrow("SELECT xact_commit, tup_inserted + tup_updated + tup_deleted AS writes FROM pg_stat_database WHERE datname = current_database()")
        return row["xact_commit"], row["writes"]
    finally:
        await conn.close()


async def redis_calls() -> dict[str, int]:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(REDIS)
    try:
        stats = await r.info("commandstats")
    finally:
        await r.aclose()
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}


WRITES = {"set", "setex", "hset", "hdel", "xadd", "publish", "expire", "sadd", "srem", "del", "incr", "decr", "evalsha", "eval", "pexpire"}


async def at_rest(cluster: Cluster, seconds: float) -> dict[str, float]:
    pids = [p.pid for p in cluster.procs]
    cpu0 = [cpu_s(p) for p in pids]
    pg0, r0 = await pg_counts(cluster.db), await redis_calls()
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    took = time.monotonic() - t0
    cpu1 = [cpu_s(p) for p in pids]
    pg1, r1 = await pg_counts(cluster.db), await redis_calls()
    calls = {k: v - r0.get(k, 0) for k, v in r1.items() if v - r0.get(k, 0)}
    return {
        "cpu_s": sum(cpu1) - sum(cpu0), "seconds": took,
        "pg_commits_per_s": (pg1[0] - pg0[0]) / took, "pg_rows_per_s": (pg1[1] - pg0[1]) / took,
        "redis_cmds_per_s": sum(calls.values()) / took, "redis_writes_per_s": sum(v for k, v in calls.items() if k in WRITES) / took,
        "redis_top": ", ".join(f"{k} {v / took:.1f}/s" for k, v in sorted(calls.items(), key=lambda kv: -kv[1])[:5]),
    }


async def streams(cluster: Cluster, m: int, words: int) -> dict[str, float]:
    """`m` streams open at once, spread over the replicas: how many got their first token,
    the replicas' RSS with all of them open, how many ended in [DONE]."""
    first = asyncio.Event()
    failures: Counter[str] = Counter()
    opened = 0
    done = 0
    peak_rss = 0
    limits = httpx.Limits(max_connections=m + 10, max_keepalive_connections=m)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120, connect=30), limits=limits, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http:
        async def one(i: int) -> None:
            nonlocal opened, done
            body = {"model": MODEL, "messages": [{"role": "user", "content": f"stream {i}"}], "max_tokens": words, "stream": True}
            counted = False
            try:
                async with http.stream("POST", cluster.urls[i % len(cluster.urls)] + "/v1/chat/completions", json=body) as r:
                    if r.status_code != 200:
                        failures[f"http {r.status_code}"] += 1
                    async for line in r.aiter_lines():
                        if '"error"' in line:
                            failures["error event"] += 1
                        if not counted and '"content"' in line:
                            counted, opened = True, opened + 1
                            if opened == m:
                                first.set()
                        if line == "data: [DONE]":
                            done += 1
            except httpx.HTTPError as exc:
                failures[type(exc).__name__] += 1

        tasks = [asyncio.create_task(one(i)) for i in range(m)]
        started = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(first.wait(), 120)
        open_s = time.monotonic() - started
        peak_rss = sum(rss_kb(p.pid) for p in cluster.procs)
        await asyncio.gather(*tasks)
    return {"opened": opened, "done": done, "open_s": open_s, "rss_kb": peak_rss, "failures": ", ".join(f"{k} {v}" for k, v in failures.most_common()) or "none"}


def routing(n: int, picks: int = 20_000) -> dict[str, float]:
    """`Placement.pick` and the maintenance `tick` over a fleet of `n` nodes, as each replica
    holds the whole fleet (every node's NodeSeen reaches every replica); a quarter of the
    nodes have a free slot."""
    from infernet.control.bus import LocalBus, NodeInfo, NodeSeen
    from infernet.control.dispatch.placement import Placement
    from infernet.control.dispatch.router import RouteRequest
    from infernet.control.health import Health
    from infernet.protocol.messages import ModelAd

    bus = LocalBus("r-bench")
    placement = Placement(bus, Health(), rng=random.Random(1))
    rng = random.Random(2)
    ad = (ModelAd(name=MODEL),)
    t0 = time.perf_counter()
    for i in range(n):
        active = CAPACITY - 1 if rng.random() < 0.25 else CAPACITY
        bus.announce(NodeSeen(NodeInfo(node_id=f"{i:064x}", models=ad, tier="cpu", capacity=CAPACITY, active=active, session="s", replica="r-x")))
    seen_us = (time.perf_counter() - t0) / n * 1e6
    req = RouteRequest(MODEL)
    t0 = time.perf_counter()
    for _ in range(picks):
        placement.pick(req)
    pick_us = (time.perf_counter() - t0) / picks * 1e6
    t0 = time.perf_counter()
    for _ in range(3):
        placement.tick()
    tick_ms = (time.perf_counter() - t0) / 3 * 1e3
    return {"pick_us": pick_us, "tick_ms": tick_ms, "seen_us": seen_us}


async def settle_after_kill(cluster: Cluster, nodes: int, timeout: float) -> tuple[float, list[int]]:
    victim = cluster.procs[0]
    before = await cluster.online()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        now = await cluster.online()
        if sum(now[1:]) >= nodes:
            return time.monotonic() - t0, before
        await asyncio.sleep(0.25)
    return float("nan"), before


# -- the run -------------------------------------------------------------------------------------------


def _fmt(rows: list[tuple[str, str]]) -> str:
    w = max(len(k) for k, _ in rows)
    lines = [f"| {'measure'.ljust(w)} | value |", f"|{'-' * (w + 2)}|-------|"]
    return "\n".join([*lines, *(f"| {k.ljust(w)} | {v} |" for k, v in rows)])


async def run(a: argparse.Namespace) -> None:
    _raise_fd_limit()
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731 - progress, not results
    cluster = Cluster(a.replicas)
    rows: list[tuple[str, str]] = []
    try:
        say(f"starting {a.replicas} replicas on a fresh PostgreSQL database and Redis namespace ({cluster.dir})")
        await cluster.start()
        rss0 = [rss_kb(p.pid) for p in cluster.procs]
        sims = a.sims or max(1, -(-a.nodes // 5000))
        say(f"connecting {a.nodes} simulated nodes from {sims} processes")
        t0 = time.monotonic()
        cluster.start_sims(a.nodes, sims, a.token_s, a.connect_at_once)
        while True:
            online = await cluster.online()
            if sum(online) >= a.nodes:
                break
            if time.monotonic() - t0 > a.connect_timeout:
                raise SystemExit(f"only {sum(online)} of {a.nodes} nodes online after {a.connect_timeout:g} s ({online}); try fewer --nodes; logs in {cluster.dir}")
            say(f"  {sum(online)} online {online}")
            await asyncio.sleep(2)
        connect_s = time.monotonic() - t0
        say(f"all online in {connect_s:.1f} s {online}; {a.rest:g} s at rest")
        await asyncio.sleep(3)  # the connect burst's writes land before the window opens
        rest = await at_rest(cluster, a.rest)
        rss1 = [rss_kb(p.pid) for p in cluster.procs]
        rss_per_k = (sum(rss1) - sum(rss0)) / (a.nodes / 1000) / 1024
        say(f"opening {a.streams} streams")
        st = await streams(cluster, a.streams, a.words)
        say(f"SIGKILL replica 0 ({online[0]} nodes)")
        settle_s, before = await settle_after_kill(cluster, a.nodes, a.settle_timeout)
        rows += [
            ("nodes / replicas / sim processes", f"{a.nodes} / {a.replicas} / {sims}"),
            ("connect, all nodes online", f"{connect_s:.1f} s ({a.nodes / connect_s:.0f} nodes/s)"),
            ("replica RSS, idle -> with nodes (sum)", f"{sum(rss0) / 1024:.0f} -> {sum(rss1) / 1024:.0f} MiB"),
            ("control-plane RSS per 1,000 nodes", f"{rss_per_k:.1f} MiB"),
            ("replica CPU at rest (all replicas)", f"{rest['cpu_s'] / rest['seconds'] * 100:.1f} % of a core"),
            ("heartbeat CPU per node (CPU s / node / s)", f"{rest['cpu_s'] / a.nodes / rest['seconds'] * 1e6:.1f} µs/s"),
            ("PostgreSQL at rest: commits, rows written", f"{rest['pg_commits_per_s']:.1f}/s, {rest['pg_rows_per_s']:.1f}/s"),
            ("Redis at rest: commands, writes (whole server)", f"{rest['redis_cmds_per_s']:.1f}/s, {rest['redis_writes_per_s']:.1f}/s ({rest['redis_top']})"),
            ("streams: open at once, ended [DONE]", f"{st['opened']}/{a.streams} in {st['open_s']:.1f} s, {st['done']} (failed: {st['failures']})"),
            ("replica RSS with the streams open (sum)", f"{st['rss_kb'] / 1024:.0f} MiB (+{(st['rss_kb'] - sum(rss1)) / max(1, a.streams):.0f} KiB/stream)"),
            ("settle after SIGKILL of a replica", f"{settle_s:.1f} s ({before[0]} nodes moved)"),
        ]
    finally:
        say("tearing down")
        await cluster.close()
    say("routing over the fleet view, in process")
    for n in sorted({a.nodes, 100_000}):
        r = routing(n)
        rows += [(f"Placement.pick over {n:,} nodes", f"{r['pick_us']:.1f} µs"),
                 (f"maintenance tick over {n:,} nodes (each second)", f"{r['tick_ms']:.1f} ms"),
                 (f"a NodeSeen into the view ({n:,} nodes)", f"{r['seen_us']:.1f} µs")]
    print(_fmt(rows))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "sim":
        urls, first, count, token_s, at_once = sys.argv[2].split(","), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
        _raise_fd_limit()
        asyncio.run(sim(urls, first, count, token_s, at_once))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--streams", type=int, default=1_000, help="streams open at once")
    ap.add_argument("--words", type=int, default=10, help="tokens per stream")
    ap.add_argument("--token-s", type=float, default=1.0, help="the simulated engine's seconds per token")
    ap.add_argument("--rest", type=float, default=30.0, help="seconds measured at rest")
    ap.add_argument("--sims", type=int, default=0, help="simulator processes (default: one per 5,000 nodes)")
    ap.add_argument("--connect-at-once", type=int, default=100, help="connects in flight per simulator process")
    ap.add_argument("--connect-timeout", type=float, default=600)
    ap.add_argument("--settle-timeout", type=float, default=300)
    args = ap.parse_args()

    async def interruptible() -> None:
        # SIGTERM (a `timeout`, a CI runner) cancels the run, so its finally tears the cluster
        # down: the replicas, the simulators, the database and the Redis keys.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        await run(args)

    asyncio.run(interruptible())


if __name__ == "__main__":
    main()
