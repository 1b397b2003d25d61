"""The node daemon and the glue that starts it from a config."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from pathlib import Path

from infernet import backends, config, hardware, logs
from infernet.node import status
from infernet.node.daemon import Node, NodeStatus
from infernet.node.metrics import NodeMetrics
from infernet.node.status import StatusWriter
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
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
) -> None:
    """Run a node until `stop` (or SIGINT/SIGTERM when run as the main program).

    `metrics_port`: serve Prometheus `GET /metrics` on metrics_host:port (0: any free port);
    None: no listener.
    """
    home = home or config.home()
    ident = keys.load_or_create(identity_path(home))
    logs.node_id.set(ident.pubkey)  # every line this process logs names its node
    name = name or socket.gethostname()
    node_status = NodeStatus(node_id=ident.pubkey)
    writer = StatusWriter(home, node_status, name=name, control_plane=control_url, npub=ident.npub)
    writer.start()  # "starting" at once: loading a model can take a while
    metrics = NodeMetrics(node_status) if metrics_port is not None else None
    backend = None
    try:
        if metrics is not None:
            try:
                bound = metrics.listen(metrics_port, metrics_host)
            except OSError as exc:
                raise SystemExit(f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc} (pick another --metrics-port)") from None
            writer.fixed["metrics_url"] = f"http://{metrics_host}:{bound}/metrics"
        hw = hardware.summary()
        if backend_kind == "auto":
            backend_kind, backend_url = await resolve_auto(hw["tier"])
        writer.fixed.update(backend=backend_kind, backend_url=backend_url)
        backend = backends.create(backend_kind, backend_url, model, capacity=capacity)
        health = await backend.health()
        node_status.backend_ok, node_status.backend_detail = health.ok, health.detail
        if not health.ok:
            log.warning("backend %s is not healthy yet: %s (the node keeps trying)", backend_kind, health.detail)
        node = Node(control_url, ident, backend, name=name, tier=hw["tier"], hardware=hw, price=price, status=node_status, observe=metrics.observe if metrics else None)
        writer.watch_backend(backend)
        await node.run(stop or asyncio.Event())
    finally:
        await writer.close()
        if metrics is not None:
            metrics.close()
        if backend is not None:
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


def run_foreground(**kwargs: object) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(stop=stop, **kwargs)  # type: ignore[arg-type]

    asyncio.run(main())


def read_status(home: Path) -> dict:
    return status.read(home)


__all__ = ["Node", "NodeStatus", "serve", "run_foreground", "read_status", "identity_path"]
