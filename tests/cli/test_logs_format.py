"""Structured logs: JSON lines with the job and node ids from the context."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from infernet import logs


@pytest.fixture
def lines():
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.setup(logging.INFO, "json", stream)
    yield lambda: [json.loads(x) for x in stream.getvalue().splitlines()]
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_the_ids_of_their_context(lines):
    log = logging.getLogger("infernet.test")
    log.info("outside")
    with logs.bind(node="n" * 64):
        log.info("in the node")
        with logs.bind(job="job-1"):
            log.warning("in the job %s", "job-1", extra={"tokens": 5})
        log.info("explicit", extra={"job_id": "job-2"})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    out = lines()
    assert [x["message"] for x in out] == ["outside", "in the node", "in the job job-1", "explicit", "failed"]
    assert "job_id" not in out[0] and "node_id" not in out[0]
    assert out[1]["node_id"] == "n" * 64 and "job_id" not in out[1]
    assert out[2] == {**out[2], "job_id": "job-1", "node_id": "n" * 64, "level": "warning", "logger": "infernet.test", "tokens": 5}
    assert out[3]["job_id"] == "job-2"
    assert "RuntimeError: boom" in out[4]["exc"] and out[4]["ts"].endswith("Z")


async def test_a_task_keeps_the_job_id_it_was_created_with(lines):
    log = logging.getLogger("infernet.test")

    async def work() -> None:
        await asyncio.sleep(0)
        log.info("in the task")

    with logs.bind(job="job-7"):
        task = asyncio.ensure_future(work())
    log.info("after")
    await task
    by_msg = {x["message"]: x for x in lines()}
    assert by_msg["in the task"]["job_id"] == "job-7" and "job_id" not in by_msg["after"]


def test_text_lines_end_with_the_ids():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextIds())
    handler.setFormatter(logs.TextFormatter())
    log = logging.getLogger("infernet.text")
    log.addHandler(handler)
    try:
        with logs.bind(job="job-3", node="ab" * 32):
            log.warning("hello")
    finally:
        log.removeHandler(handler)
    assert stream.getvalue().rstrip().endswith("hello job=job-3 node=abababababab")


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="json"):
        logs.setup(logging.INFO, "yaml")
