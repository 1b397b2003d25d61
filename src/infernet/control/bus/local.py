"""The bus in one process: direct calls, nothing queued, nothing copied.

`publish` is a dict lookup and a call, so a token batch costs what it did before the bus
existed. Also the in-memory bus that tests drive with a fake node side.
"""

from __future__ import annotations

from infernet.control.bus.base import FleetDelta, ToDriver, ToJob, ToNode, Wiring


class LocalBus(Wiring):
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

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None  # nothing is held open; the wiring stays for a restarted app
