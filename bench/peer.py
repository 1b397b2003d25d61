"""infernet beside LiteLLM's proxy, in front of the same instant upstream, in one run.

    .venv/bin/python bench/peer.py [--rounds 3] [--seconds 8] [--latency 150] [--tokens 16]

Starts a fake OpenAI-compatible upstream (`fake_engine.py`: answers at once, streams
`--tokens` chunks with exact usage), LiteLLM's proxy (`litellm[proxy]` in its own venv under
`bench/.cache/`, installed on first use; one worker, no database, logging at ERROR: its
documented production settings) and `infernet up --backend openai` in front of it. Rounds
are interleaved (upstream, LiteLLM, infernet, again) so the machine's drift hits all alike.

Per system: added p50/p99 latency of a non-streamed request and of the first token of a
streamed one (sequential, against the upstream's own), streamed requests/s and p99 at 32,
128 and 512 concurrent connections (`wrk`, Debian's package), the CPU each system's
processes spend per request, errors by kind, and usage mismatches (a sample of streams whose
final usage or text differs from what the upstream sent).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from _net import UpProcess, free_port

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
LITELLM_VENV = CACHE / "litellm-venv"
LEVELS = (32, 128, 512)


def body(stream: bool) -> dict:
    out: dict = {"model": "bench-model", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    if stream:
        out["stream_options"] = {"include_usage": True}
    return out


# -- the systems ----------------------------------------------------------------------------


@dataclass
class System:
    name: str
    url: str
    key: str
    procs: list[psutil.Process] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def cpu_s(self) -> float:
        """CPU seconds of its processes and their children, so far."""
        total = 0.0
        for p in self.procs:
            try:
                for q in [p, *p.children(recursive=True)]:
                    t = q.cpu_times()
                    total += t.user + t.system
            except psutil.NoSuchProcess:
                continue
        return total


def _spawn(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def _wait_ready(url: str, headers: dict[str, str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.post(url + "/v1/chat/completions", json=body(False), headers=headers, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not start")


def litellm_binary() -> Path:
    exe = LITELLM_VENV / "bin" / "litellm"
    if not exe.exists():
        print("installing litellm[proxy] into bench/.cache/litellm-venv (once)…", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=True)
    return exe


def start_litellm(upstream: str) -> tuple[System, subprocess.Popen, Path]:
    port = free_port()
    cfg = Path(tempfile.mkdtemp(prefix="litellm-bench-")) / "config.yaml"
    cfg.write_text(
        "model_list:\n"
        "  - model_name: bench-model\n"
        "    litellm_params:\n"
        "      model: openai/bench-model\n"
        f"      api_base: {upstream}/v1\n"
        "      api_key: unused\n"
        "litellm_settings:\n"
        "  set_verbose: false\n"
        "  drop_params: true\n"
        "  request_timeout: 600\n"
        "general_settings:\n"
        "  master_key: sk-bench-master\n"
    )
    env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_MODE": "PRODUCTION"}
    proc = _spawn([str(litellm_binary()), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"], env)
    system = System("LiteLLM", f"http://127.0.0.1:{port}", "sk-bench-master", [psutil.Process(proc.pid)])
    _wait_ready(system.url, system.headers)
    return system, proc, cfg


# -- measurements ---------------------------------------------------------------------------


async def latency(system: System, n: int) -> tuple[list[float], list[float]]:
    """(non-streamed whole request, streamed time to first token), in ms, sequential."""
    whole, first = [], []
    async with httpx.AsyncClient(base_url=system.url, headers=system.headers, timeout=60) as c:
        for _ in range(n):
            t0 = time.perf_counter()
            r = await c.post("/v1/chat/completions", json=body(False))
            if r.status_code != 200:
                raise SystemExit(f"{system.name} answered {r.status_code}: {r.text[:300]}")
            whole.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            async with c.stream("POST", "/v1/chat/completions", json=body(True)) as s:
                got = False
                async for line in s.aiter_lines():
                    if not got and line.startswith("data: ") and "tok" in line:
                        first.append((time.perf_counter() - t0) * 1000)
                        got = True
    return whole, first


async def mismatches(system: System, n: int, tokens: int) -> int:
    """Streams of a sample whose text or final usage is not what the upstream sent."""
    want = "".join(f" tok{i}" for i in range(tokens))
    bad = 0
    async with httpx.AsyncClient(base_url=system.url, headers=system.headers, timeout=60, limits=httpx.Limits(max_connections=16)) as c:

        async def one() -> None:
            nonlocal bad
            text, usage = [], None
            async with c.stream("POST", "/v1/chat/completions", json=body(True)) as s:
                async for line in s.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    for choice in chunk.get("choices") or ():
                        text.append((choice.get("delta") or {}).get("content") or "")
                    usage = chunk.get("usage") or usage
            if "".join(text) != want or not usage or usage.get("completion_tokens") != tokens:
                bad += 1

        await asyncio.gather(*(one() for _ in range(n)))
    return bad


_LUA = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
{auth}
"""


def wrk(system: System, connections: int, seconds: float) -> dict:
    script = Path(tempfile.mkdtemp(prefix="wrk-")) / "post.lua"
    auth = f'wrk.headers["Authorization"] = "Bearer {system.key}"' if system.key else ""
    script.write_text(_LUA.format(body=json.dumps(body(True)), auth=auth))
    before = system.cpu_s()
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s", "--latency", "-s", str(script), system.url + "/v1/chat/completions"],
        capture_output=True, text=True, check=True,
    ).stdout
    cpu = system.cpu_s() - before
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p99": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
        "requests": requests,
        "cpu_ms": cpu * 1000 / max(1, requests),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket": sum(map(int, sock.groups())) if sock else 0,
    }


# -- the run --------------------------------------------------------------------------------


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0, help="each wrk run")
    ap.add_argument("--latency", type=int, default=150, help="sequential requests per system per round")
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--skip-litellm", action="store_true")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/peer.py needs wrk: apt-get install wrk")

    eport = free_port()
    engine = _spawn([sys.executable, str(HERE / "fake_engine.py"), str(eport), str(args.tokens)])
    upstream = System("upstream", f"http://127.0.0.1:{eport}", "", [psutil.Process(engine.pid)])
    procs: list[subprocess.Popen] = [engine]
    up = None
    try:
        _wait_ready(upstream.url, {})
        systems = [upstream]
        if not args.skip_litellm:
            lite, lproc, _ = start_litellm(upstream.url)
            procs.append(lproc)
            systems.append(lite)
        up = UpProcess("--backend", "openai", "--backend-url", upstream.url)
        inf = System("infernet", up.url, up.key, [psutil.Process(up.proc.pid)])
        systems.append(inf)
        whole: dict[str, list[float]] = {s.name: [] for s in systems}
        first: dict[str, list[float]] = {s.name: [] for s in systems}
        load: dict[tuple[str, int], list[dict]] = {}
        for s in systems:  # warm every path
            asyncio.run(latency(s, 10))
            wrk(s, 32, 2)
        for r in range(args.rounds):
            for s in systems[r % len(systems):] + systems[: r % len(systems)]:
                w, f = asyncio.run(latency(s, args.latency // args.rounds))
                whole[s.name] += w
                first[s.name] += f
                for c in LEVELS:
                    load.setdefault((s.name, c), []).append(wrk(s, c, args.seconds))
        bad = {s.name: asyncio.run(mismatches(s, 200, args.tokens)) for s in systems}
    finally:
        if up is not None:
            up.close()
        for p in procs:
            p.terminate()
    base_w, base_f = statistics.median(whole["upstream"]), statistics.median(first["upstream"])
    print(f"\n{args.tokens} streamed tokens per request; {args.rounds} interleaved rounds; wrk {args.seconds:g} s per level; 2 cores shared by all")
    cols = ["system", "added p50 ms", "added p99 ms", "TTFT added p50", "TTFT added p99"]
    for c in LEVELS:
        cols += [f"req/s @{c}", f"p99 ms @{c}"]
    cols += ["CPU ms/req", "errors", "usage mismatches"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for s in systems:
        row = [s.name, f"{statistics.median(whole[s.name]) - base_w:.2f}", f"{pct(whole[s.name], 0.99) - pct(whole['upstream'], 0.99):.2f}",
               f"{statistics.median(first[s.name]) - base_f:.2f}", f"{pct(first[s.name], 0.99) - pct(first['upstream'], 0.99):.2f}"]
        errors = 0
        cpu = []
        for c in LEVELS:
            runs = load[(s.name, c)]
            row += [f"{statistics.median(x['rps'] for x in runs):.0f}", f"{statistics.median(x['p99'] for x in runs):.1f}"]
            errors += sum(x["non2xx"] + x["socket"] for x in runs)
            cpu += [x["cpu_ms"] for x in runs]
        row += [f"{statistics.median(cpu):.2f}", str(errors), str(bad[s.name])]
        print("| " + " | ".join(row) + " |")
    if not args.skip_litellm:
        lite_rps = statistics.median(x["rps"] for x in load[("LiteLLM", 128)])
        inf_rps = statistics.median(x["rps"] for x in load[("infernet", 128)])
        lite_add = statistics.median(whole["LiteLLM"]) - base_w
        inf_add = statistics.median(whole["infernet"]) - base_w
        print(f"\ninfernet vs LiteLLM: {inf_rps / lite_rps:.1f}x the req/s at 128 streams; {inf_add / lite_add:.2f} of its added p50 latency")


if __name__ == "__main__":
    main()
