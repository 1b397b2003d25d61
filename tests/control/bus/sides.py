"""What the bus tests share: a replica's node sessions reduced to what the bus asks of them."""

from __future__ import annotations

import asyncio

from infernet.control.bus import Release, Reserve


async def until(cond, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "not in time"
        await asyncio.sleep(0.01)


class Side:
    """A replica's node sessions, reduced to what the bus asks of them: two slots on n1."""

    def __init__(self) -> None:
        self.got: list = []
        self.active: set[str] = set()

    async def handle(self, msg) -> bool:
        self.got.append(msg)
        if msg.node_id != "n1":
            return False
        if isinstance(msg, Reserve):
            if len(self.active) >= 2:
                return False
            self.active.add(msg.job_id)
        elif isinstance(msg, Release):
            self.active.discard(msg.job_id)
        return True
