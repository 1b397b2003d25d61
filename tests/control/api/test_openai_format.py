"""SSE chunks: the template fast path reads exactly as the chunk built field by field."""

from __future__ import annotations

import json

import pytest

from infernet.control.api.openai_format import ChunkWriter
from infernet.control.dispatch.jobs import JobState
from infernet.control.dispatch.live import LiveJob

TEXTS = ["hi", ' a "quoted" \\ piece\n', "é ☃ \u2028 \x00", ""]


@pytest.mark.parametrize("kind", ["chat", "completion"])
@pytest.mark.parametrize("include_usage", [True, False])
def test_template_chunks_equal_built_ones(kind, include_usage):
    job = LiveJob(JobState(id="chatcmpl-1", key_id="k", kind=kind, model='m"odel/x'), {})
    fast, slow = ChunkWriter(job, include_usage), ChunkWriter(job, include_usage)
    fast.text("first")  # the first chunk carries the role: built in full, both ways
    slow.text("first")
    for text in TEXTS:
        a, b = fast.text(text), slow._chunk(text, None)
        assert a.startswith(b"data: ") and a.endswith(b"\n\n")
        assert json.loads(a[6:]) == json.loads(b[6:])
    if kind == "completion":  # logprobs' text offsets count the text sent either way
        assert fast._offset == slow._offset == len("first") + sum(len(t) for t in TEXTS)
