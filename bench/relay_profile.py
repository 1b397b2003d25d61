"""Where the relay's CPU goes: py-spy samples of the control plane and the node under load.

    .venv/bin/python bench/relay_profile.py [--connections 128] [--seconds 15] [--tokens 16]

Starts the instant fake upstream (`fake_engine.py`) and `infernet up --backend openai` in
front of it, drives streamed requests with `wrk` at `--connections`, and samples both
processes with py-spy meanwhile (py-spy is not a dependency: `pip install py-spy`). Prints,
per process, the share of samples by the layer that burns them (the innermost frame with a
name: a module of ours or a library) and by the module of ours that asked for them and the CPU ms per request each process spent, so the
closing figures of `docs/benchmarks.md` can be reproduced and compared run to run.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
from _net import UpProcess, free_port
from peer import HERE, System, _spawn, _wait_ready, wrk

# py-spy names frames `func (pkg/module.py:line)`, paths relative to their sys.path entry.
_LIBS = ("sqlalchemy", "aiosqlite", "sqlite3", "asyncpg", "starlette", "uvicorn", "httptools", "h11", "httpx", "httpcore",
         "anyio", "websockets", "coincurve", "msgspec", "asyncio", "selectors", "ssl", "socket", "json", "logging", "prometheus_client")
_OURS = re.compile(r"\(infernet/((?:control|node|backends|protocol)/(?:[a-z_]+/)?[a-z_]+)\.py")


def library(frame: str) -> str | None:
    m = _OURS.search(frame)
    if m:
        return "infernet/" + m.group(1)
    return next((lib for lib in _LIBS if f"({lib}/" in frame or f"({lib}.py" in frame), None)


def ours(frame: str) -> str | None:
    m = _OURS.search(frame)
    return "infernet/" + m.group(1) if m else None


def profile(path: Path) -> tuple[collections.Counter[str], collections.Counter[str]]:
    """Samples by the layer that burns them (the innermost named frame) and by the module of
    ours that asked for them (the innermost infernet frame), from py-spy's raw output."""
    leaf: collections.Counter[str] = collections.Counter()
    owner: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.split(";")[::-1]
        leaf[next((x for x in map(library, frames) if x), "other (interpreter, C)")] += int(n)
        owner[next((x for x in map(ours, frames) if x), "none of ours (loop, server)")] += int(n)
    return leaf, owner


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--top", type=int, default=14)
    args = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists() or shutil.which("wrk") is None:
        sys.exit("bench/relay_profile.py needs py-spy (pip install py-spy) and wrk (apt-get install wrk)")
    eport = free_port()
    engine = _spawn([sys.executable, str(HERE / "fake_engine.py"), str(eport), str(args.tokens)])
    up = None
    try:
        _wait_ready(f"http://127.0.0.1:{eport}", {})
        up = UpProcess("--backend", "openai", "--backend-url", f"http://127.0.0.1:{eport}")
        plane = psutil.Process(up.proc.pid)
        node = plane.children()[0]
        system = System("infernet", up.url, up.key, [plane])
        wrk(system, 32, 2)  # warm
        out = Path(tempfile.mkdtemp(prefix="relay-profile-"))
        spies = {name: subprocess.Popen([spy, "record", "--nonblocking", "--format", "raw", "--rate", "200", "-d", str(int(args.seconds)),
                                         "-p", str(p.pid), "-o", str(out / f"{name}.txt")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for name, p in (("control plane", plane), ("node", node))}
        cpu0 = {n: sum(p.cpu_times()[:2]) for n, p in (("control plane", plane), ("node", node))}
        load = wrk(system, args.connections, args.seconds)
        cpu = {n: sum(p.cpu_times()[:2]) - cpu0[n] for n, p in (("control plane", plane), ("node", node))}
        for s in spies.values():
            s.wait(60)
    finally:
        if up is not None:
            up.close()
        engine.terminate()
    print(f"\n{args.connections} streams, {args.seconds:g} s: {load['rps']:.0f} req/s, p99 {load['p99']:.1f} ms, errors {load['non2xx'] + load['socket']}")
    for name in spies:
        leaf, owner = profile(out / f"{name}.txt")
        total = sum(leaf.values()) or 1
        print(f"\n{name}: {cpu[name] * 1000 / max(1, load['requests']):.2f} CPU ms/request, {total} samples")
        a, b = leaf.most_common(args.top), owner.most_common(args.top)
        print("| burnt in | share | asked for by | share |\n|---|---:|---|---:|")
        for i in range(max(len(a), len(b))):
            x = f"{a[i][0]} | {100 * a[i][1] / total:.1f} %" if i < len(a) else " | "
            y = f"{b[i][0]} | {100 * b[i][1] / total:.1f} %" if i < len(b) else " | "
            print(f"| {x} | {y} |")

if __name__ == "__main__":
    main()
