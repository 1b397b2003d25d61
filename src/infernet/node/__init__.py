"""The node daemon and the glue that starts it from a config."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import time
from dataclasses import asdict
from pathlib import Path

from infernet import backends, config, hardware
from infernet.node.daemon import Node, NodeStatus
from infernet.protocol import keys

log = logging.getLogger("infernet.node")


def identity_path(home: Path) -> Path:
    return home / "node_key.json"


async def serve(
    control_url: str,
    backend_kind: str = "embedded",
    backend_url: str | None = None,
    model: str | None = None,
    name: str | None = None,
    price: dict[str, int] | None = None,
    home: Path | None = None,
    stop: asyncio.Event | None = None,
    capacity: int | None = None,
) -> None:
    """Run a node until `stop` (or SIGINT/SIGTERM when run as the main program)."""
    home = home or config.home()
    ident = keys.load_or_create(identity_path(home))
    hw = hardware.summary()
    if backend_kind == "auto":
        backend_kind, backend_url = await resolve_auto(hw["tier"])
    backend = backends.create(backend_kind, backend_url, model, capacity=capacity)
    health = await backend.health()
    if not health.ok:
        log.warning("backend %s is not healthy yet: %s (the node keeps trying)", backend_kind, health.detail)
    node = Node(control_url, ident, backend, name=name or socket.gethostname(), tier=hw["tier"], hardware=hw, price=price)
    stop = stop or asyncio.Event()
    status_task = asyncio.create_task(_write_status(home / "node-status.json", node.status, stop))
    try:
        await node.run(stop)
    finally:
        status_task.cancel()
        await backend.aclose()


async def resolve_auto(tier: str) -> tuple[str, str | None]:
    """`--backend auto`: probe the engines' default ports and pick by the tier's advice."""
    from infernet.backends.detect import detect

    kind, url, found = await detect(tier)
    for f in found:
        log.info("found %s at %s: %s%s", f.kind, f.url, f.detail, "" if f.ready else " (not ready)")
    if kind == "embedded":
        log.info("no ready engine with a model on the default ports; using the embedded CPU backend")
    else:
        log.info("using %s at %s (tier %s)", kind, url, tier)
    return kind, url


async def _write_status(path: Path, status: NodeStatus, stop: asyncio.Event) -> None:
    while not stop.is_set():
        data = {**asdict(status), "pid": os.getpid(), "updated_at": time.time()}
        config.write_private(path, data)
        await asyncio.sleep(2.0)


def run_foreground(**kwargs: object) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(stop=stop, **kwargs)  # type: ignore[arg-type]

    asyncio.run(main())


def read_status(home: Path) -> dict:
    try:
        return json.loads((home / "node-status.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


__all__ = ["Node", "NodeStatus", "serve", "run_foreground", "read_status", "identity_path"]
