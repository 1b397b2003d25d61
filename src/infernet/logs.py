"""Logging setup for the long-running commands (`up`, `start`): text or JSON lines, with
the job and node ids on every line where they are known.

The ids travel in context variables, so code that logs needs no extra arguments: whoever
starts work on a job or for a node sets them once (`bind`, or `.set` before creating the
task that does the work, since a task copies the context it was created in), and every
line logged inside carries them. `extra={"job_id": ...}` on one call wins over the context.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import IO, Any

FORMATS = ("text", "json")
job_id: ContextVar[str | None] = ContextVar("infernet_job_id", default=None)
node_id: ContextVar[str | None] = ContextVar("infernet_node_id", default=None)

# The attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


@contextlib.contextmanager
def bind(job: str | None = None, node: str | None = None) -> Iterator[None]:
    """Within the block (and in tasks created inside it), log lines carry these ids."""
    tokens = [(var, var.set(value)) for var, value in ((job_id, job), (node_id, node)) if value is not None]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextIds(logging.Filter):
    """Puts the context's job and node ids on each record (an explicit `extra` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = job_id.get()
        if getattr(record, "node_id", None) is None:
            record.node_id = node_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts (UTC, ISO 8601), level, logger, message, the ids, any
    `extra` fields, and the traceback as `exc` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("job_id", "node_id"):
            if getattr(record, key, None):
                out[key] = getattr(record, key)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out and key not in ("job_id", "node_id"):
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The usual text line, with ` job=ID node=ID12` at the end when they are known (the
    node id cut to 12 hex characters, as the messages themselves write it)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(name)s %(levelname)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = []
        if getattr(record, "job_id", None):
            ids.append(f"job={record.job_id}")
        if getattr(record, "node_id", None):
            ids.append(f"node={str(record.node_id)[:12]}")
        return f"{line} {' '.join(ids)}" if ids else line


def setup(level: int = logging.INFO, fmt: str = "text", stream: IO[str] | None = None) -> None:
    """Replace the root logger's handlers with one that writes `fmt` lines to `stream`."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; choose one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextIds())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request at INFO: the node's engine checks every few seconds would
    # drown its log. They show with --verbose (DEBUG).
    logging.getLogger("httpx").setLevel(level if level <= logging.DEBUG else max(level, logging.WARNING))


__all__ = ["FORMATS", "bind", "job_id", "node_id", "setup", "ContextIds", "JsonFormatter", "TextFormatter"]
