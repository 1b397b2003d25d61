"""The wait queue for jobs that found every eligible node busy: bounded and fair across keys.

Within an API key, jobs are FIFO (a job retried after a node failed goes back to the front).
Across keys, service is round-robin: the key that was just served goes to the back of the
rotation, so one client with 500 queued jobs delays another client's job by at most one job
per key ahead of it, not by 500. Bounds: `max_total` jobs overall, `max_per_key` per key;
past them a job is refused at once (429), never parked forever.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class QueueFull(Exception):
    pass


class FairQueue(Generic[T]):
    def __init__(self, max_total: int = 1000, max_per_key: int = 100) -> None:
        self.max_total = max_total
        self.max_per_key = max_per_key
        self._keys: OrderedDict[str, deque[T]] = OrderedDict()  # rotation order
        self._len = 0

    def push(self, key: str, item: T, *, front: bool = False) -> None:
        q = self._keys.get(key)
        if not front:  # a retried job already holds its place
            if self._len >= self.max_total:
                raise QueueFull("the queue is full")
            if q is not None and len(q) >= self.max_per_key:
                raise QueueFull("this key has too many jobs waiting")
        if q is None:
            q = self._keys[key] = deque()
        if front:
            q.appendleft(item)
        else:
            q.append(item)
        self._len += 1

    def remove(self, key: str, item: T) -> bool:
        q = self._keys.get(key)
        if q is None:
            return False
        try:
            q.remove(item)
        except ValueError:
            return False
        self._len -= 1
        if not q:
            del self._keys[key]
        return True

    def take(self, key: str, item: T) -> None:
        """Remove a job that is being served and move its key to the back of the rotation."""
        if self.remove(key, item) and key in self._keys:
            self._keys.move_to_end(key)

    def order(self) -> Iterator[tuple[str, T]]:
        """Waiting jobs in service order: each key's first job in rotation, then each key's
        second, and so on. Iterate over a fresh call after changing the queue."""
        queues = list(self._keys.items())
        rank = 0
        while queues:
            alive = []
            for key, q in queues:
                if rank < len(q):
                    yield key, q[rank]
                    alive.append((key, q))
            queues = alive
            rank += 1

    def waiting(self, key: str) -> int:
        q = self._keys.get(key)
        return len(q) if q else 0

    def __len__(self) -> int:
        return self._len
