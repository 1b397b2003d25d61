"""The pure parts of structured output: tool-call text as deltas, frames joined, grammars."""

from __future__ import annotations

import json

import pytest

from infernet.backends import structured
from infernet.backends.base import BackendError
from infernet.protocol.messages import Tokens, call_text, joined


def deltas_for(pieces: list[str]) -> list[dict]:
    stream = structured.CallStream()
    out = [d for p in pieces for d in stream.feed(p)]
    return out + stream.close()


@pytest.mark.parametrize("text", [
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    '{ "name": "get_weather", "arguments": { "city": "Paris", "where": {"a": [1, {"b": 2}]} } }  ',
    '{"name":"get_weather","arguments":{}}',
])
@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_call_text_streams_as_deltas_that_join_to_the_arguments(text, step):
    deltas = deltas_for([text[i : i + step] for i in range(0, len(text), step)])
    assert deltas[0]["id"].startswith("call_") and deltas[0]["function"]["name"] == "get_weather"
    assert all("id" not in d and "name" not in d["function"] for d in deltas[1:])
    args = "".join(d["function"]["arguments"] for d in deltas)
    assert json.loads(args) == json.loads(text)["arguments"] and args == args.strip()


def test_a_call_cut_off_before_its_name_yields_no_delta():
    stream = structured.CallStream()
    assert stream.feed('{"na') == [] and stream.close() == [] and stream.buf == '{"na'


def test_joined_frames_keep_one_call_whole_and_text_in_order():
    a = Tokens(job_id="j", text="", tool_calls=[{"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x'}}])
    b = Tokens(job_id="j", text="", tool_calls=[{"index": 0, "function": {"arguments": '": 1}'}}, {"index": 1, "id": "c2", "type": "function", "function": {"name": "g", "arguments": ""}}])
    c = joined([a, b])
    assert c.tool_calls == [{"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}, b.tool_calls[1]]
    assert a.tool_calls[0]["function"]["arguments"] == '{"x'  # the frames themselves are untouched
    assert call_text(c.tool_calls) == '{"name": "f", "arguments": {"x": 1}{"name": "g", "arguments": '
    plain = joined([Tokens(job_id="j", text="a"), Tokens(job_id="j", text="b", logprobs=[{"token": "b"}])])
    assert plain.text == "ab" and plain.tool_calls is None and plain.logprobs == [{"token": "b"}]


def test_a_forced_call_is_one_of_the_offered_functions():
    body = {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}, {"type": "function", "function": {"name": "g"}}], "tool_choice": "required"}
    assert [f["name"] for f in structured.forced_tools(body)] == ["f", "g"]
    assert structured.call_schema(structured.forced_tools(body))["anyOf"][1]["properties"]["name"] == {"const": "g"}
    named = {**body, "tool_choice": {"type": "function", "function": {"name": "g"}}}
    assert structured.call_schema(structured.forced_tools(named))["properties"]["name"] == {"const": "g"}
    assert structured.forced_tools({**body, "tool_choice": "auto"}) is None
    assert structured.tools_prompt({**body, "tool_choice": "none"}) is None


def test_parse_call_and_response_schemas():
    assert structured.parse_call('{"name": "f", "arguments": {"a": 1}}', {"f"}) == ("f", '{"a": 1}')
    assert structured.parse_call('{"name": "h", "arguments": {}}', {"f"}) is None
    assert structured.parse_call("not json", {"f"}) is None
    assert structured.response_schema({"response_format": {"type": "json_object"}}) == {"type": "object"}
    assert structured.response_schema({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}) == {"type": "object"}
    assert structured.response_schema({}) is None


@pytest.mark.slow
def test_schemas_become_llama_cpp_grammars_and_bad_ones_are_invalid_requests():
    assert "root ::=" in structured.gbnf({"type": "object", "properties": {"a": {"type": "integer"}}})
    with pytest.raises(BackendError) as err:
        structured.gbnf({"$ref": "https://example.com/elsewhere.json"})
    assert err.value.code == "invalid_request"
