"""The wait queue: round-robin across keys, FIFO within one, bounded."""

from __future__ import annotations

import pytest

from infernet.control.dispatch.queue import FairQueue, QueueFull


def test_order_alternates_keys_and_keeps_fifo_within_a_key():
    q: FairQueue[str] = FairQueue()
    for i in range(4):
        q.push("a", f"a{i}")
    q.push("b", "b0")
    q.push("b", "b1")
    q.push("c", "c0")
    assert [item for _, item in q.order()] == ["a0", "b0", "c0", "a1", "b1", "a2", "a3"]


def test_a_served_key_goes_to_the_back():
    q: FairQueue[str] = FairQueue()
    for k in "ab":
        q.push(k, k + "0")
        q.push(k, k + "1")
    q.take("a", "a0")
    assert [item for _, item in q.order()] == ["b0", "a1", "b1"]
    assert len(q) == 3


def test_a_retried_job_goes_to_the_front_of_its_key_and_is_never_refused():
    q: FairQueue[str] = FairQueue(max_total=2, max_per_key=2)
    q.push("a", "a0")
    q.push("a", "a1")
    q.push("a", "retry", front=True)
    assert [item for _, item in q.order()][0] == "retry"


def test_bounds():
    q: FairQueue[int] = FairQueue(max_total=3, max_per_key=2)
    q.push("a", 1)
    q.push("a", 2)
    with pytest.raises(QueueFull):
        q.push("a", 3)
    q.push("b", 4)
    with pytest.raises(QueueFull):
        q.push("c", 5)
    assert q.remove("a", 1) and not q.remove("a", 1)
    q.push("c", 5)
    assert q.waiting("a") == 1 and q.waiting("zzz") == 0
