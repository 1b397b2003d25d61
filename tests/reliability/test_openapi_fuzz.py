"""The public API, fuzzed from its own OpenAPI document (`GET /openapi.json`) with schemathesis
against a running network: no answer is a 5xx, and every error is exactly the OpenAI shape.

`INFERNET_FUZZ_EXAMPLES` sets the examples per operation (CI: a few; `bench/chaos.py --fuzz`
runs many more).
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from infernet.backends.fake import FakeBackend
from infernet.control.api.openapi import OPERATIONS
from tests.harness import ADMIN_KEY
from tests.reliability.threaded import network_in_thread

EXAMPLES = int(os.environ.get("INFERNET_FUZZ_EXAMPLES", "12"))
MODEL = "fake-model"
ERROR_FIELDS = {"message", "type", "param", "code"}
# The one 5xx that is an answer, not a fault: no online node can serve this request (none at
# all, or none meeting its `infernet` constraints, e.g. a `max_price` below every node's).
FLEET_CANNOT_SERVE = {(503, "no_nodes"), (503, "no_eligible_node")}


def openai_error_problems(status: int, content_type: str, raw: bytes) -> list[str]:
    """What makes a response break the rule: a 5xx (but the fleet's own 503), or an error not
    in the OpenAI shape."""
    if status < 400:
        return []
    if not content_type.startswith("application/json"):
        return [f"an error answered as {content_type!r}"]
    try:
        body = json.loads(raw)
    except ValueError:
        return ["an error body that is not JSON"]
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(err, dict) or set(err) != ERROR_FIELDS:
        return [f"not the OpenAI error shape: {raw[:200]!r}"]
    if status >= 500 and (status, err.get("code")) not in FLEET_CANNOT_SERVE:
        return [f"HTTP {status}: {raw[:200]!r}"]
    problems = [f"error.{k} is not a string" for k in ("message", "type") if not isinstance(err[k], str)]
    problems += [f"error.{k} is neither a string nor null" for k in ("param", "code") if err[k] is not None and not isinstance(err[k], str)]
    return problems


@schemathesis.check
def openai_error_shape(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> bool | None:
    problems = openai_error_problems(response.status_code, response.headers.get("content-type", [""])[0], response.content)
    if problems:
        raise AssertionError("; ".join(problems))
    return True


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    async def setup(net):
        await net.add_node(FakeBackend(slots=8))

    with network_in_thread(tmp_path_factory.mktemp("fuzz"), setup) as (net, _loop):
        yield schemathesis.openapi.from_url(net.url + "/openapi.json")


def steer(case: schemathesis.Case) -> None:
    """Half the generation requests name the served model, so they run on a node, stream and
    bill instead of stopping at a 404 (which the other half still checks)."""
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("model"), str) and len(body["model"]) % 2 == 0:
        body["model"] = MODEL


# Negative cases (bodies and parameters that break the schema) where there is something to break.
CASES = [(op, GenerationMode.POSITIVE) for op in OPERATIONS] + [(op, GenerationMode.NEGATIVE) for op in OPERATIONS if op.body or op.params]


@pytest.mark.parametrize(("op", "mode"), CASES, ids=[f"{op.method.upper()} {op.path} {mode}" for op, mode in CASES])
def test_no_5xx_and_every_error_in_the_openai_shape(api, op, mode):
    operation = api[op.path][op.method.upper()]

    @given(operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def fuzz(case: schemathesis.Case) -> None:
        steer(case)
        case.call_and_validate(headers={"Authorization": f"Bearer {ADMIN_KEY}"}, checks=[openai_error_shape], timeout=30)

    fuzz()


def test_the_document_lists_every_public_route_and_is_served_without_a_key(tmp_path):
    async def setup(net):
        return None

    with network_in_thread(tmp_path, setup) as (net, _loop):
        r = httpx.get(net.url + "/openapi.json")
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        doc = r.json()
        routes = {(route.path, m.lower()) for route in net.server.config.app.routes if hasattr(route, "methods") for m in route.methods or () if m != "HEAD"}
    listed = {(op.path.replace("{model}", "{model:path}"), op.method) for op in OPERATIONS}
    assert listed <= routes
    # Left out on purpose: the dashboard and its endless live feed, Prometheus text, the raw
    # upload probe, this document, and the Ollama-compatible API (Ollama's shapes, not OpenAI's).
    ollama = {"/api/tags", "/api/ps", "/api/show", "/api/chat", "/api/generate", "/api/embed"}
    assert {p for p, _ in routes - listed} == {"/dashboard", "/api/v1/events", "/metrics", "/api/v1/probe/upload", "/openapi.json", *ollama}
    chat = doc["components"]["schemas"]["ChatRequest"]
    assert chat["required"] == ["model", "messages"] and chat["properties"]["max_tokens"]["anyOf"][0]["maximum"] == 1_000_000
    assert doc["components"]["schemas"]["ErrorDetail"]["additionalProperties"] is False


@pytest.mark.parametrize(
    ("status", "ctype", "raw", "bad"),
    [
        (400, "application/json", b'{"error": {"message": "m", "type": "t", "param": null, "code": "c"}}', False),
        (404, "application/json", b'{"detail": "Not Found"}', True),
        (400, "application/json", b'{"error": {"message": "m", "type": "t", "code": "c"}}', True),
        (401, "text/plain", b"nope", True),
        (500, "application/json", b'{"error": {"message": "m", "type": "t", "param": null, "code": "c"}}', True),
        (502, "application/json", b'{"error": {"message": "m", "type": "t", "param": null, "code": "node_failed"}}', True),
        (503, "application/json", b'{"error": {"message": "m", "type": "t", "param": null, "code": "no_eligible_node"}}', False),
        (200, "text/event-stream", b"data: x", False),
    ],
)
def test_the_error_shape_check_can_fail(status, ctype, raw, bad):
    assert bool(openai_error_problems(status, ctype, raw)) is bad
