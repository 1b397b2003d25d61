"""Structured output for an engine that decodes under a grammar (the embedded llama.cpp):
the GBNF for a `response_format` or a forced tool call, the prompt that tells the model its
tools, and the tool-call text turned back into OpenAI tool-call deltas as it streams.

A call is written `{"name": "<function>", "arguments": {...}}`, the shape most
instruction-tuned models were taught, and the one `messages.call_text` meters.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from infernet.backends.base import BackendError

_ANY_OBJECT: dict[str, Any] = {"type": "object"}


def gbnf(schema: dict[str, Any]) -> str:
    """llama.cpp's own JSON-Schema-to-GBNF conversion (what its server uses)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        return json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises on schema features it lacks
        raise BackendError(f"this JSON schema cannot be turned into a grammar ({type(exc).__name__}: {exc})", code="invalid_request") from None


def response_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The schema the answer must match: any JSON object for `json_object`, the given one
    for `json_schema` (an empty or missing schema: any JSON object)."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_object":
        return _ANY_OBJECT
    if fmt.get("type") == "json_schema":
        return (fmt.get("json_schema") or {}).get("schema") or _ANY_OBJECT
    return None


def forced_tools(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The functions one of which must be called (`required`, or a named function), else None."""
    tools = [t["function"] for t in body.get("tools") or ()]
    choice = body.get("tool_choice")
    if not tools:
        return None
    if choice == "required":
        return tools
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return [f for f in tools if f["name"] == name]
    return None


def call_schema(functions: list[dict[str, Any]]) -> dict[str, Any]:
    """One call of one of `functions`, its arguments valid for that function's schema."""
    options = [
        {
            "type": "object",
            "properties": {"name": {"const": f["name"]}, "arguments": f.get("parameters") or {"type": "object", "properties": {}}},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for f in functions
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def tools_prompt(body: dict[str, Any]) -> str | None:
    """The system text that tells the model its functions (None: no tools in play)."""
    tools = [t["function"] for t in body.get("tools") or ()]
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return None
    forced = forced_tools(body)
    how = "Call one of them" if forced is None or len(forced) > 1 else f"Call `{forced[0]['name']}`"
    if forced is None:
        how = "To call one"
    return (
        "You can call these functions:\n" + json.dumps(tools) + f"\n{how}: answer with only a JSON object "
        '{"name": <function name>, "arguments": <the arguments object>}.'
    )


def format_prompt(body: dict[str, Any]) -> str | None:
    schema = response_schema(body)
    if schema is None:
        return None
    if schema is _ANY_OBJECT:
        return "Answer with a JSON object."
    return "Answer with a JSON object matching this JSON schema:\n" + json.dumps(schema)


def history(messages: list[dict[str, Any]], text_of: Any) -> list[dict[str, str]]:
    """Messages as a plain chat template takes them: earlier calls written as the model
    writes them, tool results as the user's report of them."""
    out = []
    for m in messages:
        content = text_of(m.get("content"))
        if m.get("tool_calls"):
            calls = [f'{{"name": "{c["function"]["name"]}", "arguments": {c["function"]["arguments"] or "{}"}}}' for c in m["tool_calls"]]
            content = (content + "\n" if content else "") + "\n".join(calls)
        role = m["role"]
        if role == "tool":
            role, content = "user", f"Function result ({m.get('tool_call_id', '')}): {content}"
        elif role == "developer":
            role = "system"
        out.append({"role": role, "content": content})
    return out


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


_HEAD = re.compile(r'^\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*')


class CallStream:
    """Generated text of a call, `{"name": "f", "arguments": {...}}`, as OpenAI deltas: the
    first carries the id and name once the name is complete, later ones argument pieces.
    The closing brace of the call (and the whitespace around it) is held back, so the
    argument pieces join to exactly the arguments' JSON text."""

    def __init__(self) -> None:
        self.buf = ""
        self.name: str | None = None
        self.id = new_call_id()
        self.held = ""
        self.begun = False

    def feed(self, text: str) -> list[dict[str, Any]]:
        if self.name is None:
            self.buf += text
            head = _HEAD.match(self.buf)
            if head is None:
                return []
            self.name = json.loads('"' + head.group(1) + '"')
            rest = self.buf[head.end():]
            return [{"index": 0, "id": self.id, "type": "function", "function": {"name": self.name, "arguments": ""}}, *self._args(rest)]
        return self._args(text)

    def _args(self, text: str) -> list[dict[str, Any]]:
        self.held += text
        if not self.begun:  # the arguments' JSON starts at its brace, not the space before it
            self.held = self.held.lstrip()
            self.begun = bool(self.held)
        keep = len(self.held.rstrip().rstrip("}").rstrip()) if self.held.rstrip().endswith("}") else len(self.held)
        piece, self.held = self.held[:keep], self.held[keep:]
        return [{"index": 0, "function": {"arguments": piece}}] if piece else []

    def close(self) -> list[dict[str, Any]]:
        """The arguments' last piece: what was held, less the call's own closing brace."""
        if self.name is None:
            return []
        tail = self.held.rstrip()
        tail = tail.removesuffix("}")
        self.held = ""
        tail = tail.rstrip()
        return [{"index": 0, "function": {"arguments": tail}}] if tail else []


def parse_call(text: str, names: set[str]) -> tuple[str, str] | None:
    """(name, arguments JSON) when `text` is a call of one of `names`, else None."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("name") not in names:
        return None
    args = data.get("arguments", data.get("parameters", {}))
    if not isinstance(args, dict):
        return None
    return data["name"], json.dumps(args)
