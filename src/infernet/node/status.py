"""`node-status.json`: what a running node tells the commands on its machine.

The daemon keeps a `NodeStatus` in memory; this writer puts it in the node's home: at once
when its state changes (connected, models, the engine's health), within a second when only
its counters of jobs and tokens do (under load they change at every poll), and every few
seconds anyway, so that a reader can tell a live node from a file left behind: `live()` wants the pid alive and a recent `updated_at`. The last write, on
stop, says `running: false`, so `infernet status` is right the moment the node is gone.
The engine's health is checked here, every few seconds, because the daemon only reads the
engine when it connects and on each heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil

from infernet import config

log = logging.getLogger("infernet.node")

FILE = "node-status.json"
POLL_S = 0.2  # how soon a change of state reaches the file
COUNTS_S = 1.0  # how soon a change of counters does: under load they change every poll
COUNTERS = ("jobs_done", "jobs_failed", "tokens_out", "active")
REFRESH_S = 2.0  # rewritten at least this often while running
STALE_S = 3 * REFRESH_S  # older than this with no stop written: a hung or killed node
HEALTH_S = 5.0  # the engine's health check


def path(home: Path) -> Path:
    return home / FILE


def read(home: Path) -> dict[str, Any]:
    try:
        return json.loads(path(home).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def pid_alive(pid: Any) -> bool:
    """A running process (a killed one its parent has not reaped yet is a zombie: dead)."""
    try:
        return psutil.Process(int(pid)).status() != psutil.STATUS_ZOMBIE
    except (TypeError, ValueError, psutil.NoSuchProcess):
        return False
    except psutil.AccessDenied:  # someone else's process: alive
        return True


def live(data: dict[str, Any], now: float | None = None) -> bool:
    """True for the status of a node that runs now: not stopped, its pid alive, fresh."""
    if not data or not data.get("running", True):
        return False
    age = (now or time.time()) - float(data.get("updated_at") or 0)
    return age <= STALE_S and pid_alive(data.get("pid"))


class StatusWriter:
    """Writes the daemon's status to `home/node-status.json` until `close`."""

    def __init__(self, home: Path, status: Any, **fixed: Any) -> None:
        """`status`: the daemon's `NodeStatus`; `fixed`: fields that never change (name, url...)."""
        self.file = path(home)
        self.status = status
        self.fixed = fixed
        self.backend: Any = None  # set once the engine adapter exists
        self.phase = "starting"
        self.started_at = time.time()
        self._task: asyncio.Task[None] | None = None
        self._health: asyncio.Task[None] | None = None

    def snapshot(self) -> dict[str, Any]:
        return {**asdict(self.status), **self.fixed, "phase": self.phase, "running": self.phase != "stopped", "started_at": self.started_at}

    def write(self) -> None:
        data = {**self.snapshot(), "pid": os.getpid(), "updated_at": time.time()}
        try:
            config.write_private(self.file, data)
        except OSError as exc:  # a full disk must not take the node down
            log.warning("cannot write %s: %s", self.file, exc)

    def start(self) -> None:
        self.write()
        self._task = asyncio.create_task(self._loop())

    def watch_backend(self, backend: Any) -> None:
        self.backend = backend
        self.phase = "running"
        self._health = asyncio.create_task(self._check_health())

    async def _loop(self) -> None:
        last, written = self.snapshot(), time.monotonic()
        while True:
            await asyncio.sleep(POLL_S)
            now, age = self.snapshot(), time.monotonic() - written
            state = any(now[k] != last[k] for k in now if k not in COUNTERS)
            if state or (now != last and age >= COUNTS_S) or age >= REFRESH_S:
                self.write()
                last, written = now, time.monotonic()

    async def _check_health(self) -> None:
        while True:
            try:
                h = await asyncio.wait_for(self.backend.health(), HEALTH_S)
                ok, detail = h.ok, h.detail
            except Exception as exc:  # a broken adapter is a down engine, never a dead node
                ok, detail = False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if ok != self.status.backend_ok:
                (log.info if ok else log.warning)("engine %s: %s", "up" if ok else "down", detail)
            self.status.backend_ok, self.status.backend_detail = ok, detail
            await asyncio.sleep(HEALTH_S)

    async def close(self) -> None:
        for task in (self._task, self._health):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.phase = "stopped"
        self.status.connected = False
        self.status.active = 0
        self.write()
