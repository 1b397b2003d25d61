"""`infernet up` as a user runs it, in a subprocess, with its node on a fake Ollama (a real
HTTP server on loopback in this process): a real control plane, a real node process in
`up`'s home, no model to load. Commands are run as subprocesses, as a person types them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.harness import free_port

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


def env(home: Path, **extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("INFERNET_")}
    out.update(PYTHONPATH=str(ROOT / "src"), INFERNET_HOME=str(home), COLUMNS="200", TERM="dumb")
    out.update(extra)
    return out


def cli(home: Path, *args: str, input: str | None = None, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "infernet", *args], env=env(home, **extra), capture_output=True, text=True, input=input, timeout=timeout, check=False)


def wait_until(cond: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        time.sleep(0.1)


@dataclass
class Up:
    home: Path
    proc: subprocess.Popen[bytes]
    url: str = ""
    key: str = ""

    @classmethod
    def start(cls, home: Path, *args: str, wait_models: bool = True) -> Up:
        home.mkdir(parents=True, exist_ok=True)
        log = open(home.parent / f"up-{home.name}.log", "ab")
        proc = subprocess.Popen([PY, "-m", "infernet", "up", "--port", str(free_port()), *args], env=env(home), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        up = cls(home, proc)
        def client() -> dict[str, Any] | None:
            up._alive()
            f = home / "client.json"
            return json.loads(f.read_text()) if f.exists() else None

        cfg = wait_until(client, 60, "up's client.json")
        up.url, up.key = cfg["url"], cfg["api_key"]
        if wait_models:
            wait_until(lambda: up._alive() and up.models(), 60, "a model online")
        return up

    def _alive(self) -> bool:
        assert self.proc.poll() is None, self.log()
        return True

    def log(self) -> str:
        return (self.home.parent / f"up-{self.home.name}.log").read_text(errors="replace")

    def models(self) -> list[dict[str, Any]]:
        try:
            return httpx.get(self.url + "/v1/models", headers={"Authorization": f"Bearer {self.key}"}, timeout=5).json()["data"]
        except (httpx.HTTPError, KeyError, ValueError):
            return []

    def nodes(self) -> list[dict[str, Any]]:
        return httpx.get(self.url + "/api/v1/nodes", headers={"Authorization": f"Bearer {self.key}"}, timeout=5).json()["data"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
