"""Chaos runs: real processes, concurrent streaming clients, one fault a run, then the books.

    python -m bench.chaos                      # every fault, defaults that finish in minutes
    python -m bench.chaos --faults node_kill,cp_kill_1s --clients 150 --jobs 900

Processes: a control plane (`bench/chaos_plane.py`, SQLite in a temp home, restarted with
the same home after a SIGKILL), node daemons (`infernet start --foreground -b openai`, each
its own home and identity), and one process of fake engines (`bench/chaos_engine.py`, one
port a node) whose answers the checker can recompute and which logs what it sent. The
clients stream chat completions with funded client keys; about `--cancel` of them hang up
after a few events. Faults (`FAULTS`): a node SIGKILLed (and started again); the control
plane SIGKILLed and restarted after 1 s or 6 s (the nodes reconnect by themselves); an
engine that stalls; an engine that sends garbage. After each run `check` proves, from the
API and the database: every job final; every stream that ended in [DONE] carried exactly
the engine's answer, and was charged and receipted; nothing ran twice; ledger/check clean;
receipts sum to the clients' spend; no client charged for a failed job.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.chaos_engine import MODEL, answer, parse_prompt, prompt
from infernet.protocol import keys

ROOT = Path(__file__).resolve().parents[1]
ADMIN_KEY = "inf-chaos-admin-" + "0" * 16
PG = os.environ.get("INFERNET_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("INFERNET_TEST_REDIS", "redis://127.0.0.1:6379/0")
INTERNAL_KEY_ID = "key_internal"
TERMINAL = ("completed", "failed", "cancelled")
FAULTS = ("none", "node_kill", "cp_kill_1s", "cp_kill_6s", "engine_stall", "engine_garbage")
CLUSTER_FAULTS = ("replica_kill",)  # only with replicas (a cluster of two or more)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home: Path | None = None, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", **extra}
    if home is not None:
        env["INFERNET_HOME"] = str(home)
    env.pop("INFERNET_API_KEY", None)
    return env


# -- the processes ---------------------------------------------------------------------------


def stop_processes(procs: list[subprocess.Popen[bytes] | None], wait_s: float) -> None:
    """SIGTERM them all at once (so they shut down side by side), then wait for each; one
    that outlives `wait_s` is killed."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        if proc is not None:
            try:
                proc.wait(wait_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Cluster:
    """A control plane (or `replicas` of one cluster), `nodes` node daemons and their
    engines, each a real process.

    `replicas` None: the embedded control plane (SQLite in a temp home). A number: that many
    replicas of one cluster (`bench/chaos_plane.py` in replica mode) sharing a fresh
    PostgreSQL database (`pg`, dropped by `aclose`) and a Redis namespace of their own; each
    node is given every replica's URL, its own replica first, so their sockets spread."""

    def __init__(self, nodes: int = 3, capacity: int = 16, word_delay_s: float = 0.002, quiet: bool = True, *,
                 replicas: int | None = None, pg: str = PG, redis: str = REDIS) -> None:
        if replicas is not None and replicas < 1:
            raise ValueError("a cluster has at least one replica")
        self.dir = Path(tempfile.mkdtemp(prefix="infernet-chaos-"))
        self.home = self.dir / "plane"
        self.home.mkdir()
        self.replicas = replicas
        self.ports = [free_port() for _ in range(replicas or 1)]
        self.urls = [f"http://127.0.0.1:{p}" for p in self.ports]
        self.port, self.url = self.ports[0], self.urls[0]
        self.pg_admin = pg
        self.db_url = pg.rsplit("/", 1)[0] + "/infernet_chaos_" + secrets.token_hex(6) if replicas else None
        self.redis_url = f"{redis}#infernet-chaos-{secrets.token_hex(4)}" if replicas else None
        self.engine_ports = [free_port() for _ in range(nodes)]
        self.engine_log = self.dir / "engine.jsonl"
        self.capacity = capacity
        self.quiet = quiet
        self.out = subprocess.DEVNULL if quiet else None
        self.engine = subprocess.Popen(
            [sys.executable, "-m", "bench.chaos_engine", str(self.engine_log), *map(str, self.engine_ports)],
            cwd=ROOT, env=_env(CHAOS_WORD_DELAY_S=str(word_delay_s)), stdout=self.out, stderr=self.out,
        )
        self.planes: list[subprocess.Popen[bytes] | None] = [None] * len(self.ports)
        self.nodes: list[subprocess.Popen[bytes] | None] = [None] * nodes
        self.killed: set[int] = set()  # replicas SIGKILLed at least once
        self.kills = 0

    @property
    def plane(self) -> subprocess.Popen[bytes] | None:
        return self.planes[0]

    # control plane (replica i)
    def plane_log(self, i: int = 0) -> Path:
        return self.dir / f"replica{i}.log"

    def start_plane(self, i: int = 0) -> None:
        args = [sys.executable, "-m", "bench.chaos_plane", str(self.home), str(self.ports[i]), ADMIN_KEY]
        if self.replicas:
            assert self.db_url is not None and self.redis_url is not None
            args += [self.db_url, self.redis_url]
            # A replica's log is read back (its id, its take-overs): always to a file.
            with open(self.plane_log(i), "ab") as log:
                self.planes[i] = subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT)
            return
        self.planes[i] = subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=self.out, stderr=self.out)

    def kill_plane(self, i: int = 0) -> None:
        proc = self.planes[i]
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.kills += 1
        self.killed.add(i)

    def incarnations(self, i: int) -> list[str]:
        """The ids replica i ran under, oldest first (one per start)."""
        if not self.plane_log(i).exists():
            return []
        return re.findall(r"^replica (\S+) serving on", self.plane_log(i).read_text(errors="replace"), re.M)

    def takeovers(self) -> list[tuple[str, str, str]]:
        """(taker, job, previous owner) for every job a replica took over, from their logs."""
        out = []
        for i in range(len(self.ports)):
            taker = ""
            for line in self.plane_log(i).read_text(errors="replace").splitlines() if self.plane_log(i).exists() else ():
                if m := re.match(r"replica (\S+) serving on", line):
                    taker = m.group(1)
                elif m := re.search(r"job (\S+) \(of replica (\S+)\): its replica went away", line):
                    out.append((taker, m.group(1), m.group(2)))
        return out

    # nodes
    def start_node(self, i: int) -> None:
        home = self.dir / f"node{i}"
        home.mkdir(exist_ok=True)
        first = i % len(self.urls)  # each node starts on its own replica, then tries the others
        urls = ",".join(self.urls[first:] + self.urls[:first])
        args = [sys.executable, "-m", "infernet", "start", "--foreground", "-c", urls, "-b", "openai",
                "--backend-url", f"http://127.0.0.1:{self.engine_ports[i]}", "--capacity", str(self.capacity), "--name", f"chaos{i}"]
        self.nodes[i] = subprocess.Popen(args, cwd=ROOT, env=_env(home), stdout=self.out, stderr=self.out)

    def kill_node(self, i: int) -> None:
        proc = self.nodes[i]
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.kills += 1

    async def set_mode(self, i: int, mode: str) -> None:
        async with httpx.AsyncClient() as c:
            (await c.post(f"http://127.0.0.1:{self.engine_ports[i]}/chaos/mode", json={"mode": mode})).raise_for_status()

    # lifecycle
    def live_url(self) -> str:
        """A replica that is up (the admin's calls go there)."""
        for url, proc in zip(self.urls, self.planes):
            if proc is not None and proc.poll() is None:
                return url
        return self.url

    def admin(self, url: str | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=url or self.live_url(), headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)

    async def wait_ready(self, nodes: int | None = None, timeout: float = 90) -> None:
        """Every control plane answers and `nodes` nodes are online (on one replica or
        another)."""
        want = len(self.nodes) if nodes is None else nodes
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=5) as c:
            while True:
                online: int | None = 0
                for url in self.urls:
                    try:
                        online += (await c.get(url + "/healthz")).json()["nodes"]  # type: ignore[operator]
                    except (httpx.HTTPError, ValueError, KeyError):
                        online = None
                        break
                if online is not None and online >= want:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{want} nodes did not come online")
                for i, proc in enumerate(self.planes):
                    if proc is not None and proc.poll() is not None:
                        raise RuntimeError(f"control plane {i} exited" + (f"; its log: {self.plane_log(i)}" if self.replicas else ""))
                await asyncio.sleep(0.1)

    async def start(self) -> None:
        if self.replicas:
            await self._create_database()
            # Every replica signs with one platform key: made once, before any starts.
            keys.load_or_create(self.home / "platform_key.json")
        for i in range(len(self.planes)):
            self.start_plane(i)
        for i in range(len(self.nodes)):
            self.start_node(i)
        await self.wait_ready()

    async def _create_database(self) -> None:
        import asyncpg

        from infernet.control.store.engine import open_engine
        from infernet.control.store.migrate import upgrade

        assert self.db_url is not None
        try:
            admin = await asyncpg.connect(self.pg_admin.replace("postgresql://", "postgres://"), timeout=5)
            try:
                await admin.execute(f'CREATE DATABASE "{self.db_url.rsplit("/", 1)[1]}"')
            finally:
                await admin.close()
        except (OSError, asyncpg.PostgresError) as exc:
            raise RuntimeError(f"a cluster needs PostgreSQL: could not create a database through {self.pg_admin} ({exc}); set INFERNET_TEST_PG") from None
        engine = await open_engine(self.db_url)
        try:
            await upgrade(engine)  # what `infernet control-plane migrate` does, once for all replicas
        finally:
            await engine.dispose()

    def close(self) -> None:
        stop_processes([*self.nodes, *self.planes, self.engine], 15)

    async def aclose(self) -> None:
        """Stop every process; drop the cluster's database and its Redis keys."""
        self.close()
        if not self.replicas:
            return
        import asyncpg
        import redis.asyncio as aioredis

        assert self.db_url is not None and self.redis_url is not None
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            admin = await asyncpg.connect(self.pg_admin.replace("postgresql://", "postgres://"), timeout=5)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{self.db_url.rsplit("/", 1)[1]}" WITH (FORCE)')
            finally:
                await admin.close()
        url, _, prefix = self.redis_url.partition("#")
        r = aioredis.Redis.from_url(url)
        with contextlib.suppress(OSError, aioredis.RedisError):
            stale = [k async for k in r.scan_iter(match=prefix + ":*", count=1000)]
            if stale:
                await r.delete(*stale)
        await r.aclose()

    async def rows(self, sql: str) -> list[dict[str, Any]]:
        """A read of the store, whichever it is (JSON columns come back as text from both)."""
        if not self.replicas:
            with contextlib.closing(sqlite3.connect(f"file:{self.home / 'control.db'}?mode=ro", uri=True, timeout=30)) as conn:
                conn.row_factory = sqlite3.Row
                return [dict(r) for r in conn.execute(sql)]
        import asyncpg

        assert self.db_url is not None
        conn = await asyncpg.connect(self.db_url.replace("postgresql://", "postgres://"), timeout=10)
        try:
            return [dict(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()


# -- the clients -------------------------------------------------------------------------------


@dataclass
class Request:
    nonce: str
    words: int
    key_id: str
    stream: bool = True
    cancel_after: int | None = None  # events read before hanging up
    replica: int = 0  # the replica it was sent to (its index in the cluster)
    api: str = "openai"  # openai: a chat completion; jobs: POST /api/v1/jobs, then its stream from another replica
    job_id: str = ""
    text: str = ""
    outcome: str = ""  # done | cancelled | error_event | http_<status> | cut | connection (dropped) | refused (never sent) | unknown_job (a bug)
    error: str = ""
    reattached: int = 0  # job API: streams re-attached with Last-Event-ID after a drop


@dataclass
class Fleet:
    """Clients on funded keys, streaming concurrently until `jobs` requests were made. With
    several URLs (replicas of one cluster) request i goes to replica i mod n; `jobs_api` of
    them go through the job API and follow the job's stream at another replica, re-attaching
    with Last-Event-ID at the next one when a stream drops."""

    url: str | list[str]
    keys: list[tuple[str, str]]  # (key id, key)
    clients: int = 150
    jobs: int = 600
    cancel: float = 0.10
    stream: bool = True
    min_words: int = 4
    max_words: int = 40
    seed: int = 1
    jobs_api: float = 0.0
    done: list[Request] = field(default_factory=list)
    refused: int = 0  # connections the control plane refused while it was down

    @property
    def urls(self) -> list[str]:
        return [self.url] if isinstance(self.url, str) else list(self.url)

    async def run(self) -> list[Request]:
        rng = random.Random(self.seed)
        todo = [self._request(rng, i) for i in range(self.jobs)]
        limits = httpx.Limits(max_connections=self.clients + 10, max_keepalive_connections=self.clients)
        async with httpx.AsyncClient(timeout=httpx.Timeout(60, connect=5), limits=limits) as http:
            async def worker() -> None:
                while todo:
                    req = todo.pop()
                    await (self._one_job(http, req) if req.api == "jobs" else self._one(http, req))
                    if req.outcome == "refused":
                        # The control plane is down (or up with no node back yet: a 503) and
                        # nothing ran: back off, and ask again with a fresh request (at the
                        # next replica, in a cluster).
                        self.refused += 1
                        todo.append(self._request(rng, len(self.done) + self.refused))
                        await asyncio.sleep(0.25)
                        continue
                    self.done.append(req)

            await asyncio.gather(*(worker() for _ in range(self.clients)))
        return self.done

    def _request(self, rng: random.Random, i: int) -> Request:
        key_id, _ = self.keys[i % len(self.keys)]
        cancel = rng.randint(1, 2) if rng.random() < self.cancel and self.stream else None
        api = "jobs" if rng.random() < self.jobs_api else "openai"
        return Request(secrets.token_hex(8), rng.randint(self.min_words, self.max_words), key_id, self.stream, None if api == "jobs" else cancel, i % len(self.urls), api)

    async def _one(self, http: httpx.AsyncClient, req: Request) -> None:
        key = dict(self.keys)[req.key_id]
        url = self.urls[req.replica]
        body = {"model": MODEL, "messages": [{"role": "user", "content": prompt(req.nonce, req.words)}], "max_tokens": req.words, "stream": req.stream}
        headers = {"Authorization": f"Bearer {key}"}
        try:
            if not req.stream:
                r = await http.post(url + "/v1/chat/completions", json=body, headers=headers)
                data = r.json()
                if r.status_code == 200:
                    req.job_id, req.text, req.outcome = data["id"], data["choices"][0]["message"]["content"], "done"
                else:
                    req.outcome, req.error = f"http_{r.status_code}", data["error"]["message"]
                    if data["error"]["code"] == "no_nodes":
                        req.outcome = "refused"
                return
            async with http.stream("POST", url + "/v1/chat/completions", json=body, headers=headers) as r:
                if r.status_code != 200:
                    req.outcome, req.error = f"http_{r.status_code}", (await r.aread()).decode()[:200]
                    if r.status_code == 503 and "no_nodes" in req.error:
                        req.outcome = "refused"
                    return
                events = 0
                finished = False
                async for line in r.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    if line == "data: [DONE]":
                        req.outcome = "done" if finished else "done_without_finish"
                        return
                    data = json.loads(line[6:])
                    if "error" in data:
                        req.outcome, req.error = "error_event", str(data["error"].get("code"))
                        return
                    req.job_id = data["id"]
                    for choice in data.get("choices") or []:
                        req.text += choice["delta"].get("content") or ""
                        finished = finished or choice.get("finish_reason") is not None
                    events += 1
                    if req.cancel_after is not None and events >= req.cancel_after:
                        req.outcome = "cancelled"
                        return
                req.outcome = "cut"  # the stream ended without [DONE] or an error event
        except httpx.ConnectError:
            req.outcome = "refused"
        except (httpx.HTTPError, ValueError) as exc:
            req.outcome, req.error = "connection", type(exc).__name__

    async def _one_job(self, http: httpx.AsyncClient, req: Request) -> None:
        """POST /api/v1/jobs at its replica, then follow GET /api/v1/jobs/{id}/stream at the
        next one (a follower of a job driven elsewhere); when that stream drops, re-attach at
        the one after with Last-Event-ID, so nothing is read twice or missed."""
        urls = self.urls
        headers = {"Authorization": f"Bearer {dict(self.keys)[req.key_id]}"}
        body = {"model": MODEL, "messages": [{"role": "user", "content": prompt(req.nonce, req.words)}], "max_tokens": req.words}
        try:
            r = await http.post(urls[req.replica] + "/api/v1/jobs", json=body, headers=headers)
        except httpx.ConnectError:
            req.outcome = "refused"
            return
        except httpx.HTTPError as exc:
            req.outcome, req.error = "connection", type(exc).__name__
            return
        if r.status_code != 202:
            req.outcome, req.error = f"http_{r.status_code}", r.text[:200]
            if r.status_code == 503 and "no_nodes" in req.error:
                req.outcome = "refused"
            return
        req.job_id = r.json()["id"]
        last = 0
        for attempt in range(4 * len(urls)):
            url = urls[(req.replica + 1 + attempt) % len(urls)]
            if attempt:
                req.reattached += 1
                await asyncio.sleep(0.5)
            try:
                async with http.stream("GET", url + f"/api/v1/jobs/{req.job_id}/stream", headers={**headers, "Last-Event-ID": str(last)}) as s:
                    if s.status_code == 404:
                        # The API accepted this job (202): every replica must find it.
                        req.outcome, req.error = "unknown_job", f"{url} answered 404 for {req.job_id} after its 202"
                        return
                    if s.status_code != 200:
                        req.outcome, req.error = f"http_{s.status_code}", (await s.aread()).decode()[:200]
                        return
                    event = ""
                    async for line in s.aiter_lines():
                        if line.startswith("id: "):
                            seq = int(line[4:])
                        elif line.startswith("event: "):
                            event = line[7:]
                        elif line.startswith("data: "):
                            data = json.loads(line[6:])
                            if seq <= last:
                                req.outcome, req.error = "mismatch", f"event {seq} again after {last}"
                                return
                            last = seq
                            if event == "token":
                                req.text += data.get("text") or ""
                            elif event == "done":
                                req.outcome = "done"
                                return
                            elif event == "error":
                                req.outcome, req.error = "error_event", str(data.get("code"))
                                return
            except (httpx.HTTPError, ValueError):
                continue  # the follower's replica went away: re-attach at the next one
        req.outcome = "cut"


async def funded_keys(cluster: Cluster, n: int, usdc: str = "1000.00") -> list[tuple[str, str]]:
    out = []
    async with cluster.admin() as c:
        for i in range(n):
            rec = (await c.post("/api/v1/keys", json={"name": f"chaos{i}"})).json()
            (await c.post(f"/api/v1/keys/{rec['id']}/credit", json={"amount": usdc})).raise_for_status()
            out.append((rec["id"], rec["key"]))
    return out


# -- faults ----------------------------------------------------------------------------------------


async def inject(cluster: Cluster, fault: str, fleet: Fleet) -> None:
    """Wait until a quarter of the requests are answered, then do `fault` to the cluster."""
    while len(fleet.done) < fleet.jobs // 4:
        await asyncio.sleep(0.05)
    if fault == "node_kill":
        cluster.kill_node(0)
        await asyncio.sleep(2.0)
        cluster.start_node(0)  # same home, same identity: it rejoins
    elif fault in ("cp_kill_1s", "cp_kill_6s"):
        cluster.kill_plane()
        await asyncio.sleep(1.0 if fault == "cp_kill_1s" else 6.0)
        cluster.start_plane()
    elif fault == "replica_kill":
        # The replica holding node 1's socket and a third of the clients: its nodes move to
        # the others, its jobs' leases run out and the living replicas take them over.
        victim = 1 % len(cluster.planes)
        cluster.kill_plane(victim)
        await asyncio.sleep(3.0)
        cluster.start_plane(victim)
    elif fault in ("engine_stall", "engine_garbage"):
        await cluster.set_mode(0, fault.removeprefix("engine_"))
        await asyncio.sleep(4.0)
        await cluster.set_mode(0, "normal")


# -- the checks --------------------------------------------------------------------------------------


@dataclass
class Report:
    fault: str
    requests: int = 0
    jobs: int = 0
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    client_errors: int = 0  # requests the client saw fail (an error event, a non-200, a dropped connection)
    not_final: int = 0
    mismatches: int = 0
    double_runs: int = 0
    charge_errors: int = 0
    ledger_problems: int = 0
    held: int = 0  # micro-USDC still in escrow after the run
    internal: int = 0  # requests failed by a control-plane bug (internal_error, a 202 job another replica cannot find)
    taken_over: int = 0  # jobs a replica took over from another (from the replicas' logs)
    wrong_owner: int = 0  # jobs taken from a replica that was alive (a live replica's lease must hold)
    seconds: float = 0.0
    details: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.not_final + self.mismatches + self.double_runs + self.charge_errors + self.ledger_problems + self.internal + self.wrong_owner + (1 if self.held else 0)

    def row(self) -> list[Any]:
        return [self.fault, self.requests, self.jobs, self.completed, self.cancelled, self.failed, self.client_errors,
                self.not_final, self.mismatches, self.double_runs, self.charge_errors, self.ledger_problems, self.held, self.internal, self.taken_over, self.wrong_owner, f"{self.seconds:.0f}"]


HEADER = ["fault", "requests", "jobs", "completed", "cancelled", "failed", "client errors", "not final", "mismatches", "double runs", "charge errors", "ledger problems", "held", "internal errors", "taken over", "wrong owner", "s"]


async def settle(cluster: Cluster, timeout: float = 60) -> None:
    """Wait until no job is open in the store and no money is held (the control plane ends
    every job, and releases the holds a killed run left without a job: see chaos_plane)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        open_ = (await cluster.rows("SELECT count(*) AS n FROM jobs WHERE status NOT IN ('completed','failed','cancelled')"))[0]["n"]
        open_ += (await cluster.rows("SELECT count(*) AS n FROM holds WHERE status = 'held'"))[0]["n"]
        if not open_:
            return
        await asyncio.sleep(0.2)


async def check(cluster: Cluster, fault: str, requests: list[Request], keys: list[tuple[str, str]], credited: int) -> Report:
    rep = Report(fault, requests=len(requests))
    await settle(cluster)
    async with cluster.admin() as c:
        ledger = (await c.get("/api/v1/ledger/check")).json()
        balances = {k: (await c.get("/api/v1/balance", params={"key_id": k})).json() for k, _ in keys}
    rep.ledger_problems = len(ledger["problems"])
    rep.details += [f"ledger: {p}" for p in ledger["problems"][:5]]
    key_ids = {k for k, _ in keys}
    jobs = [r for r in await cluster.rows("SELECT * FROM jobs") if r["key_id"] in key_ids]
    receipts = {r["job_id"]: r for r in await cluster.rows("SELECT * FROM receipts")}
    holds = {r["job_id"]: r for r in await cluster.rows("SELECT * FROM holds")}
    runs: Counter[str] = Counter()
    sent: dict[str, str] = {}
    for line in cluster.engine_log.read_text().splitlines():
        rec = json.loads(line)
        runs[rec["nonce"]] += 1
        if rec["whole"] and rec["fault"] is None:
            sent[rec["nonce"]] = rec["text"]
    by_nonce: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        parsed = parse_prompt(json.loads(job["body"])["messages"][-1]["content"])
        if parsed:
            by_nonce.setdefault(parsed[0], []).append(job)
    rep.jobs = len(jobs)
    for job in jobs:
        status = job["status"]
        rep.completed += status == "completed"
        rep.cancelled += status == "cancelled"
        rep.failed += status == "failed"
        if status not in TERMINAL:
            rep.not_final += 1
            rep.details.append(f"{job['id']} is still {status}")
        receipt = receipts.get(job["id"])
        if status == "failed" and (receipt is not None or (holds.get(job["id"]) or {}).get("charged")):
            rep.charge_errors += 1
            rep.details.append(f"{job['id']} failed but was charged")
        if status == "completed":
            parsed = parse_prompt(json.loads(job["body"])["messages"][-1]["content"])
            assert parsed is not None
            if receipt is None:
                rep.charge_errors += 1
                rep.details.append(f"{job['id']} completed without a receipt")
            elif json.loads(receipt["settlement"])["output_tokens"] != len(answer(*parsed).split()):
                rep.charge_errors += 1
                rep.details.append(f"{job['id']} billed {json.loads(receipt['settlement'])['output_tokens']} tokens for {parsed[1]}")
            if job["output"] != answer(*parsed):
                rep.mismatches += 1
                rep.details.append(f"{job['id']} stored text differs from the engine's answer")
    for nonce, rows in by_nonce.items():
        if len(rows) > 1 or runs[nonce] > sum(r["attempts"] for r in rows):
            rep.double_runs += 1
            rep.details.append(f"request {nonce}: {len(rows)} jobs, {runs[nonce]} engine runs for {sum(r['attempts'] for r in rows)} attempts")
    rep.details.append("client outcomes: " + ", ".join(f"{k} {v}" for k, v in Counter(r.outcome for r in requests).most_common()))
    errors = Counter(f"{r.outcome}: {r.error[:160]}" for r in requests if r.outcome.startswith(("http_", "error_event")))
    rep.details += [f"{n} x {e}" for e, n in errors.most_common(3)]
    rep.details += [f"cut: {r.api} at replica {r.replica}, job {r.job_id}, {r.reattached} re-attaches, {len(r.text)} chars" for r in requests if r.outcome == "cut"][:3]
    status_of = {j["id"]: j["status"] for j in jobs}
    for req in requests:
        if req.outcome not in ("done", "cancelled"):
            rep.client_errors += 1
        rep.internal += "internal_error" in req.error or req.outcome == "unknown_job"
        if req.outcome == "mismatch":
            rep.mismatches += 1
            rep.details.append(f"request {req.nonce} (job {req.job_id}): {req.error}")
        if req.outcome.startswith("done"):
            want = answer(req.nonce, req.words)
            if req.text != want or (req.nonce in sent and sent[req.nonce] != want) or req.outcome != "done":
                rep.mismatches += 1
                rep.details.append(f"request {req.nonce} ({req.api} at replica {req.replica}, job {req.job_id}, {req.reattached} re-attaches): got {len(req.text)} chars {req.text[-60:]!r}, "
                                   f"the engine sent {len(want)} {want[-60:]!r} ({req.outcome})")
            if status_of.get(req.job_id) != "completed" or req.job_id not in receipts:
                rep.charge_errors += 1
                job, hold = next((j for j in jobs if j["id"] == req.job_id), {}), holds.get(req.job_id) or {}
                rep.details.append(f"request {req.nonce} ({req.api} at replica {req.replica}) saw [DONE] but job {req.job_id} is {status_of.get(req.job_id)}, receipt {req.job_id in receipts}; "
                                   f"owner {job.get('owner')}, attempts {job.get('attempts')}, hold {hold.get('status')} charged {hold.get('charged')}")
    for key_id, _ in keys:
        bal = balances[key_id]
        charged = sum(r["price"] for r in receipts.values() if r["key_id"] == key_id)
        rep.held += bal["held"]
        if credited - bal["available"] - bal["held"] != charged:
            rep.charge_errors += 1
            rep.details.append(f"{key_id}: spent {credited - bal['available'] - bal['held']} but its receipts total {charged}")
    if rep.held:
        rep.details.append(f"{rep.held} micro-USDC still held: " + ", ".join(j for j, h in holds.items() if h["status"] == "held")[:300])
    if cluster.replicas:
        check_owners(cluster, rep, requests, {j["id"]: j for j in jobs})
    return rep


def check_owners(cluster: Cluster, rep: Report, requests: list[Request], jobs: dict[str, dict[str, Any]]) -> None:
    """A replica takes over only the jobs of a replica that went away: every take-over in
    the logs took a job from a killed incarnation, and every job submitted to a replica that
    was never killed is still owned by it."""
    dead = {r for i in cluster.killed for r in cluster.incarnations(i)[:-1]}  # every start but the last was killed
    taken = cluster.takeovers()
    rep.taken_over = len(taken)
    for taker, job_id, previous in taken:
        if previous not in dead:
            rep.wrong_owner += 1
            rep.details.append(f"replica {taker} took over {job_id} from {previous}, which was alive")
    for req in requests:
        job = jobs.get(req.job_id)
        if job is None or req.replica in cluster.killed:
            continue
        (owner,) = cluster.incarnations(req.replica)
        if job["owner"] != owner:
            rep.wrong_owner += 1
            rep.details.append(f"job {req.job_id} was submitted to {owner}, which never died, but is owned by {job['owner']}")
    rep.details.append(f"{len(taken)} jobs taken over, from {sorted({p for _, _, p in taken})}; dead incarnations {sorted(dead)}")


# -- a run ---------------------------------------------------------------------------------------------


async def run_one(fault: str, *, clients: int = 150, jobs: int = 600, nodes: int = 3, capacity: int = 16, cancel: float = 0.10,
                  stream: bool = True, min_words: int = 4, max_words: int = 40, word_delay_s: float = 0.002, seed: int = 1, quiet: bool = True,
                  replicas: int | None = None, jobs_api: float | None = None) -> Report:
    """One run. `replicas`: a cluster of that many (see `Cluster`); `jobs_api`: the share of
    requests made through the job API (default: a fifth in a cluster, none embedded)."""
    if fault in CLUSTER_FAULTS and (replicas or 0) < 2:
        raise ValueError(f"{fault} needs a cluster of two replicas or more (--replicas 2)")
    cluster = Cluster(nodes, capacity, word_delay_s, quiet, replicas=replicas)
    started = time.monotonic()
    try:
        await cluster.start()
        credit = "1000.00"
        keys = await funded_keys(cluster, 10, credit)
        share = (0.2 if replicas else 0.0) if jobs_api is None else jobs_api
        fleet = Fleet(cluster.urls, keys, clients=clients, jobs=jobs, cancel=cancel, stream=stream, min_words=min_words, max_words=max_words, seed=seed, jobs_api=share)
        injector = asyncio.create_task(inject(cluster, fault, fleet))
        requests = await fleet.run()
        await injector
        for i, proc in enumerate(cluster.planes):
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"control plane {i} died" + (f"; its log: {cluster.plane_log(i)}" if cluster.replicas else ""))
        await cluster.wait_ready(0)
        rep = await check(cluster, fault, requests, keys, 1000 * 1_000_000)
    finally:
        await cluster.aclose()
    rep.seconds = time.monotonic() - started
    return rep


def table(reports: list[Report]) -> str:
    rows = [HEADER, *[list(map(str, r.row())) for r in reports]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faults", default=None, help=f"comma-separated, from: {', '.join(FAULTS + CLUSTER_FAULTS)} (default: all that apply)")
    ap.add_argument("--replicas", type=int, default=None, help="run a cluster of N control-plane replicas on PostgreSQL and Redis (INFERNET_TEST_PG, INFERNET_TEST_REDIS)")
    ap.add_argument("--jobs-api", type=float, default=None, help="share of requests made through the job API (default: 0.2 in a cluster)")
    ap.add_argument("--clients", type=int, default=150, help="concurrent streaming clients")
    ap.add_argument("--jobs", type=int, default=600, help="requests per run")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--capacity", type=int, default=16, help="jobs a node runs at once")
    ap.add_argument("--cancel", type=float, default=0.10, help="share of clients that hang up mid-stream")
    ap.add_argument("--word-delay", type=float, default=0.002, help="seconds the engine takes per word")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--verbose", action="store_true", help="show the processes' logs")
    a = ap.parse_args()
    if a.replicas is not None and a.replicas < 1:
        ap.error("--replicas must be 1 or more")
    cluster = (a.replicas or 0) >= 2
    faults = a.faults.split(",") if a.faults else [*FAULTS, *(CLUSTER_FAULTS if cluster else ())]
    for fault in faults:
        if fault not in FAULTS + CLUSTER_FAULTS:
            ap.error(f"unknown fault {fault!r}; choose from {', '.join(FAULTS + CLUSTER_FAULTS)}")
        if fault in CLUSTER_FAULTS and not cluster:
            ap.error(f"{fault} needs --replicas 2 or more")
    reports = []
    for fault in faults:
        try:
            rep = asyncio.run(run_one(fault, clients=a.clients, jobs=a.jobs, nodes=a.nodes, capacity=a.capacity, cancel=a.cancel, word_delay_s=a.word_delay, seed=a.seed,
                                      quiet=not a.verbose, replicas=a.replicas, jobs_api=a.jobs_api))
        except (OSError, RuntimeError, TimeoutError) as exc:  # a service away, a process that would not start
            sys.exit(f"chaos run {fault}: {type(exc).__name__}: {exc}")
        reports.append(rep)
        print(table([rep]).splitlines()[-1], flush=True)
        for d in rep.details[:10]:
            print("   ", d, flush=True)
    print()
    print(table(reports))
    lost = sum(r.lost for r in reports)
    print(f"\n{len(reports)} runs, {sum(r.requests for r in reports)} requests, {sum(r.jobs for r in reports)} jobs; lost: {lost}")
    sys.exit(1 if lost else 0)


if __name__ == "__main__":
    main()
