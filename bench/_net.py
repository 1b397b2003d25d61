"""Shared pieces for the benchmarks: a control plane in a thread-free subprocess setup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UpProcess:
    """`infernet up` in a subprocess with its own INFERNET_HOME."""

    def __init__(self, *args: str) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="infernet-bench-"))
        env = {**os.environ, "INFERNET_HOME": str(self.home), "PYTHONPATH": str(ROOT / "src")}
        env.pop("INFERNET_API_KEY", None)
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "infernet", "up", "--port", str(self.port), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 180
        while True:
            try:
                cfg = json.loads((self.home / "client.json").read_text())
                models = httpx.get(cfg["url"] + "/v1/models", headers={"Authorization": f"Bearer {cfg['api_key']}"}).json()["data"]
                if models:
                    break
            except (FileNotFoundError, ValueError, KeyError, httpx.HTTPError):
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("infernet up did not start")
            time.sleep(0.2)
        self.url, self.key, self.model = cfg["url"], cfg["api_key"], models[0]["id"]

    def close(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(30)
