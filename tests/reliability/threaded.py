"""A real network (tests.harness.Network) on an event loop of its own thread, for clients that
block: schemathesis calls the API with `requests` from the test's thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from infernet.control import Settings
from tests.harness import Network


@contextlib.contextmanager
def network_in_thread(tmp: Path, setup: Callable[[Network], Awaitable[Any]], settings: Settings | None = None) -> Iterator[tuple[Network, asyncio.AbstractEventLoop]]:
    """Start a network, run `setup(net)` on its loop, yield (net, loop) until the block ends."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    up: list[Network] = []
    failure: list[BaseException] = []
    stop: list[asyncio.Event] = []

    async def main() -> None:
        stop.append(asyncio.Event())
        try:
            async with Network.start(tmp=tmp, settings=settings) as net:
                await setup(net)
                up.append(net)
                started.set()
                await stop[0].wait()
        except BaseException as exc:  # reported to the test's thread
            failure.append(exc)
            started.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    started.wait(60)
    if failure or not up:
        raise RuntimeError("the network did not start") from (failure[0] if failure else None)
    try:
        yield up[0], loop
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(30)
        loop.close()


def run_on(loop: asyncio.AbstractEventLoop, coro: Awaitable[Any], timeout: float = 30) -> Any:
    """Run a coroutine on the network's loop from the test's thread."""
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)  # type: ignore[arg-type]
