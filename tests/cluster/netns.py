"""A cluster across real network namespaces, for the tests in this package.

Two control-plane replicas (`infernet control-plane serve`, PostgreSQL + Redis) run in the
root namespace, each bound to its own address on a bridge made for the test; every node
daemon and its engine (`bench/chaos_engine.py`, the real OpenAI wire format) run in a
namespace of their own, joined to the bridge by a veth pair. PostgreSQL and Redis listen on
127.0.0.1 in the root namespace, which only the replicas need.

Faults are done to the network, not to the processes: `partition(replica)` drops every
packet between the node namespaces and that replica's address in both directions (a
blackhole route out, a blackhole rule for what comes in), `heal` removes them; `slow` puts
a link delay between a node and the replicas (`tc netem` where the kernel has it, else the
userspace relay in `tests/cluster/delay.py`).

Every name carries a random suffix so parallel runs never collide, and `Net.close` removes
every namespace, link, rule and process this run made, whatever failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.chaos import stop_processes
from bench.chaos_engine import answer, parse_prompt

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "inf-netns-admin-" + "0" * 16
ENGINE_PORT = 9100  # inside each node's namespace: every namespace has its own ports
RELAY_PORT = 9200
TERMINAL = ("completed", "failed", "cancelled")


def require_netns() -> None:
    """Skip, saying why, where namespaces cannot be made here."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the cluster tests make network namespaces, veths and routes")
    if shutil.which("ip") is None:
        pytest.skip("needs `ip` (iproute2) to make network namespaces; install iproute2")
    probe = f"infp{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"`ip netns add` does not work here: {made.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(args), capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {res.stderr.strip()}")
    return res


def netem_available() -> bool:
    """Whether this kernel has `sch_netem` (a throwaway namespace is asked)."""
    probe = f"infq{secrets.token_hex(3)}"
    sh("ip", "netns", "add", probe)
    try:
        sh("ip", "-n", probe, "link", "set", "lo", "up")
        return sh("ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms", check=False).returncode == 0
    finally:
        sh("ip", "netns", "del", probe, check=False)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERNET_")}
    env.update(PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}", **extra)
    return env


def _free_subnet() -> str:
    """A /24 of 10.0.0.0/8 no interface here uses: `10.a.b`."""
    used = sh("ip", "-o", "addr").stdout + sh("ip", "route").stdout
    for _ in range(100):
        prefix = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}"
        if prefix + "." not in used:
            return prefix
    raise RuntimeError("no free 10.x.y.0/24 for the test bridge")


@dataclass
class NodeNs:
    i: int
    ns: str
    addr: str
    home: Path
    engine_log: Path
    urls: list[str]
    engine: subprocess.Popen[bytes] | None = None
    node: subprocess.Popen[bytes] | None = None
    relay: subprocess.Popen[bytes] | None = None

    def exec(self, *args: str, **env: str) -> list[str]:
        """A command line run inside this node's namespace, with the test's environment
        passed explicitly (ip netns exec keeps it, but say so)."""
        return ["ip", "netns", "exec", self.ns, "env", *(f"{k}={v}" for k, v in _env(**env).items()), *args]


@dataclass
class Net:
    """The bridge, the replicas on it and the node namespaces; see the module docstring."""

    pg_url: str
    redis_url: str
    dir: Path
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    subnet: str = field(default_factory=_free_subnet)
    replicas: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    replica_url: dict[str, str] = field(default_factory=dict)
    nodes: list[NodeNs] = field(default_factory=list)
    _links: list[str] = field(default_factory=list)
    _netns: list[str] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"ib{self.tag}"

    def addr(self, name: str) -> str:
        return f"{self.subnet}.{ {'a': 1, 'b': 2}[name] }"

    # -- building it ------------------------------------------------------------------------

    def make_bridge(self) -> None:
        self._links.append(self.bridge)
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        for name in ("a", "b"):
            sh("ip", "addr", "add", f"{self.addr(name)}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")

    def migrate(self) -> None:
        res = subprocess.run([sys.executable, "-m", "infernet", "control-plane", "migrate", "--db", self.pg_url], cwd=ROOT, env=_env(), capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"migrate failed: {res.stdout}{res.stderr}")

    def start_replica(self, name: str) -> None:
        data = self.dir / "platform"  # one platform key for every replica (receipts are signed with it)
        data.mkdir(exist_ok=True)
        port = 8787
        url = f"http://{self.addr(name)}:{port}"
        log = open(self.dir / f"replica-{name}.log", "ab")  # noqa: SIM115 - the process holds it
        self.replicas[name] = subprocess.Popen(
            [sys.executable, "-m", "infernet", "control-plane", "serve", "--db", self.pg_url, "--redis", self.redis_url,
             "--host", self.addr(name), "--port", str(port), "--data-dir", str(data), "-v"],
            cwd=ROOT, env=_env(INFERNET_API_KEY=ADMIN_KEY), stdout=log, stderr=subprocess.STDOUT,
        )
        self.replica_url[name] = url

    def add_node_ns(self, urls: list[str]) -> NodeNs:
        i = len(self.nodes)
        ns = f"inf{self.tag}n{i}"
        outside, inside = f"iv{self.tag}{i}", f"iw{self.tag}{i}"
        self._netns.append(ns)
        sh("ip", "netns", "add", ns)
        self._links.append(outside)
        sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        sh("ip", "link", "set", inside, "netns", ns)
        sh("ip", "link", "set", outside, "master", self.bridge)
        sh("ip", "link", "set", outside, "up")
        addr = f"{self.subnet}.{10 + i}"
        sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", inside)
        sh("ip", "-n", ns, "link", "set", inside, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        home = self.dir / f"node{i}"
        home.mkdir()
        node = NodeNs(i, ns, addr, home, self.dir / f"engine{i}.jsonl", urls)
        self.nodes.append(node)
        return node

    def start_engine(self, node: NodeNs, word_delay_s: float = 0.01) -> None:
        log = open(self.dir / f"engine{node.i}.log", "ab")  # noqa: SIM115
        node.engine = subprocess.Popen(node.exec(sys.executable, "-m", "bench.chaos_engine", str(node.engine_log), str(ENGINE_PORT), CHAOS_WORD_DELAY_S=str(word_delay_s)),
                                       cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def start_node(self, node: NodeNs, capacity: int = 8) -> None:
        log = open(self.dir / f"node{node.i}.log", "ab")  # noqa: SIM115
        node.node = subprocess.Popen(node.exec(
            sys.executable, "-m", "infernet", "start", "--foreground", "-c", ",".join(node.urls), "-b", "openai",
            "--backend-url", f"http://127.0.0.1:{ENGINE_PORT}", "--capacity", str(capacity), "--name", f"netns{node.i}",
            INFERNET_HOME=str(node.home),
        ), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    # -- faults -----------------------------------------------------------------------------

    def partition(self, name: str) -> None:
        """Nothing passes between the node namespaces and replica `name`, either way."""
        for n in self.nodes:
            sh("ip", "-n", n.ns, "route", "add", "blackhole", f"{self.addr(name)}/32")
            sh("ip", "-n", n.ns, "rule", "add", "from", f"{self.addr(name)}/32", "blackhole", "priority", "100")

    def heal(self, name: str) -> None:
        for n in self.nodes:
            sh("ip", "-n", n.ns, "route", "del", "blackhole", f"{self.addr(name)}/32", check=False)
            sh("ip", "-n", n.ns, "rule", "del", "from", f"{self.addr(name)}/32", "blackhole", "priority", "100", check=False)

    def slow(self, node: NodeNs, delay_s: float, loss: float = 0.0) -> str:
        """Put `delay_s` between `node` and the replicas; returns how ("netem" or "relay").
        With netem the node's own link delays what it sends (and drops `loss` of it); the
        relay (no netem in this kernel) holds each byte `delay_s` each way, so it is a
        longer path than netem's, never a shorter one. Call before `start_node`: with the
        relay, the node's URLs become the relay's."""
        if netem_available():
            inside = f"iw{self.tag}{node.i}"
            spec = ["delay", f"{int(delay_s * 1000)}ms", *(["loss", f"{loss * 100:g}%"] if loss else [])]
            sh("ip", "netns", "exec", node.ns, "tc", "qdisc", "add", "dev", inside, "root", "netem", *spec)
            return "netem"
        target = node.urls[0].removeprefix("http://")
        host, port = target.rsplit(":", 1)
        log = open(self.dir / f"relay{node.i}.log", "ab")  # noqa: SIM115
        node.relay = subprocess.Popen(node.exec(sys.executable, "-m", "tests.cluster.delay", "127.0.0.1", str(RELAY_PORT), host, port, str(delay_s)),
                                      cwd=ROOT, stdout=subprocess.PIPE, stderr=log)
        assert node.relay.stdout is not None
        if node.relay.stdout.readline().strip() != b"ready":
            raise RuntimeError("the delay relay did not start")
        node.urls = [f"http://127.0.0.1:{RELAY_PORT}"]
        return "relay"

    # -- asking it --------------------------------------------------------------------------

    def admin(self, name: str = "a") -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.replica_url[name], headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)

    async def online(self) -> dict[str, int]:
        """Nodes online at each replica (its own sockets)."""
        out = {}
        async with httpx.AsyncClient(timeout=3) as c:
            for name, url in self.replica_url.items():
                try:
                    out[name] = (await c.get(url + "/healthz")).json()["nodes"]
                except (httpx.HTTPError, ValueError, KeyError):
                    out[name] = -1
        return out

    async def until(self, cond: Any, timeout: float, what: str) -> float:
        """Poll `cond()` (async) until true; seconds it took. Fails naming `what`."""
        started = time.monotonic()
        while True:
            if await cond():
                return time.monotonic() - started
            for name, proc in self.replicas.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"replica {name} exited ({proc.returncode}); see {self.dir}/replica-{name}.log")
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{what}: not within {timeout:g} s (online: {await self.online()}; logs in {self.dir})")
            await asyncio.sleep(0.1)

    # -- taking it down ---------------------------------------------------------------------

    def close(self) -> None:
        stop_processes([p for n in self.nodes for p in (n.node, n.relay, n.engine)] + list(self.replicas.values()), 10)
        for ns in self._netns:
            sh("ip", "netns", "del", ns, check=False)
        for link in self._links:
            sh("ip", "link", "del", link, check=False)


@contextlib.asynccontextmanager
async def network(pg_url: str, redis_url: str, tmp: Path):
    require_netns()
    net = Net(pg_url, redis_url, tmp)
    try:
        net.make_bridge()
        net.migrate()
        for name in ("a", "b"):
            net.start_replica(name)

        async def up() -> bool:
            return all(v >= 0 for v in (await net.online()).values())

        await net.until(up, 60, "both replicas answering /healthz")
        yield net
    finally:
        net.close()


async def funded(net: Net, n: int, usdc: str = "100.00") -> list[tuple[str, str]]:
    out = []
    async with net.admin() as c:
        for i in range(n):
            rec = (await c.post("/api/v1/keys", json={"name": f"netns{i}"})).json()
            (await c.post(f"/api/v1/keys/{rec['id']}/credit", json={"amount": usdc})).raise_for_status()
            out.append((rec["id"], rec["key"]))
    return out


# -- the audit ------------------------------------------------------------------------------------


@dataclass
class Audit:
    jobs: list[dict[str, Any]]
    receipts: dict[str, dict[str, Any]]
    runs: Counter[str]  # engine runs per nonce, from every engine's log
    problems: list[str]


async def audit(net: Net, keys: list[tuple[str, str]], credited: int, timeout: float = 60) -> Audit:
    """What the store and the engines say once every job has ended: every job final, at most
    one engine run per attempt and one job per request, every completed job's text the
    engine's and billed the words it produced, no failed job charged, nothing held, each
    key's spend its receipts' sum, and ledger/check clean."""
    import asyncpg

    key_ids = {k for k, _ in keys}
    db = await asyncpg.connect(net.pg_url.replace("postgresql://", "postgres://"))
    try:
        deadline = time.monotonic() + timeout
        while True:
            open_ = await db.fetchval("SELECT count(*) FROM jobs WHERE status NOT IN ('completed','failed','cancelled')")
            open_ += await db.fetchval("SELECT count(*) FROM holds WHERE status = 'held'")
            if not open_ or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        jobs = [dict(r) for r in await db.fetch("SELECT * FROM jobs") if r["key_id"] in key_ids]
        receipts = {r["job_id"]: dict(r) for r in await db.fetch("SELECT * FROM receipts")}
        holds = {r["job_id"]: dict(r) for r in await db.fetch("SELECT * FROM holds")}
    finally:
        await db.close()
    problems: list[str] = []
    runs: Counter[str] = Counter()
    for n in net.nodes:
        if n.engine_log.exists():
            for line in n.engine_log.read_text().splitlines():
                runs[json.loads(line)["nonce"]] += 1
    by_nonce: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        body = job["body"] if isinstance(job["body"], dict) else json.loads(job["body"])
        parsed = parse_prompt(body["messages"][-1]["content"])
        assert parsed is not None
        by_nonce.setdefault(parsed[0], []).append(job)
        if job["status"] not in TERMINAL:
            problems.append(f"{job['id']} is still {job['status']}")
        receipt = receipts.get(job["id"])
        if job["status"] == "failed" and (receipt is not None or (holds.get(job["id"]) or {}).get("charged")):
            problems.append(f"{job['id']} failed but was charged")
        if job["status"] == "completed":
            if job["output"] != answer(*parsed):
                problems.append(f"{job['id']}: stored text is not the engine's answer")
            if receipt is None:
                problems.append(f"{job['id']} completed without a receipt")
            elif json.loads(receipt["settlement"])["output_tokens"] != parsed[1]:
                problems.append(f"{job['id']} billed {json.loads(receipt['settlement'])['output_tokens']} tokens for {parsed[1]} words")
    for nonce, rows in by_nonce.items():
        if len(rows) > 1 or runs[nonce] > sum(r["attempts"] for r in rows):
            problems.append(f"request {nonce}: {len(rows)} jobs, {runs[nonce]} engine runs for {sum(r['attempts'] for r in rows)} attempts")
    async with net.admin("b") as c:
        ledger = (await c.get("/api/v1/ledger/check")).json()
        problems += [f"ledger: {p}" for p in ledger["problems"]]
        for key_id, _ in keys:
            bal = (await c.get("/api/v1/balance", params={"key_id": key_id})).json()
            charged = sum(r["price"] for r in receipts.values() if r["key_id"] == key_id)
            if bal["held"]:
                problems.append(f"{key_id}: {bal['held']} micro-USDC still held")
            if credited - bal["available"] - bal["held"] != charged:
                problems.append(f"{key_id}: spent {credited - bal['available'] - bal['held']}, its receipts total {charged}")
    return Audit(jobs, receipts, runs, problems)
