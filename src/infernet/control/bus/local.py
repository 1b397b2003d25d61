"""The bus in one process: direct calls, nothing queued, nothing copied.

`publish` is a dict lookup and a call, so a token batch costs what it did before the bus
existed. Also the in-memory bus that tests drive with a fake node side.
"""

from __future__ import annotations

import secrets

from infernet.control.bus.base import (
    DriverHandler,
    FleetDelta,
    FleetHandler,
    JobHandler,
    NodeSide,
    ToDriver,
    ToJob,
    ToNode,
)


class LocalBus:
    def __init__(self, replica: str | None = None) -> None:
        self._replica = replica or "r-" + secrets.token_hex(6)
        self._nodes: NodeSide | None = None
        self._jobs: dict[str, JobHandler] = {}
        self._fleet: list[FleetHandler] = []
        self._driver: DriverHandler | None = None

    @property
    def replica(self) -> str:
        return self._replica

    async def send(self, msg: ToNode) -> bool:
        if self._nodes is None:
            return False
        return await self._nodes.handle(msg)

    def publish(self, msg: ToJob) -> None:
        handler = self._jobs.get(msg.job_id)
        if handler is not None:
            handler(msg)

    def tell(self, replica: str, msg: ToDriver) -> None:
        if replica == self._replica and self._driver is not None:
            self._driver(msg)

    def announce(self, msg: FleetDelta) -> None:
        for handler in self._fleet:
            handler(msg)

    def serve(self, nodes: NodeSide) -> None:
        self._nodes = nodes

    def follow(self, job_id: str, handler: JobHandler) -> None:
        self._jobs[job_id] = handler

    def unfollow(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)

    def watch(self, handler: FleetHandler) -> None:
        self._fleet.append(handler)

    def drive(self, handler: DriverHandler) -> None:
        self._driver = handler

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None  # nothing is held open; the wiring stays for a restarted app
