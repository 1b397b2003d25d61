"""Query parameters, bounded: every value a read route takes is checked here, and a bad one
is a 400 in the OpenAI error shape naming the parameter. Unknown parameters are ignored, as
unknown body fields are."""

from __future__ import annotations

import math
import re
from collections.abc import Collection

from starlette.requests import Request

from infernet.control.errors import InvalidRequest

NODE_ID = re.compile(r"[0-9a-f]{64}")
KEY_ID = re.compile(r"key_[A-Za-z0-9_]{1,28}")


def _given(request: Request, name: str) -> str | None:
    """The parameter's text; None when absent or empty (`?status=` means no filter)."""
    return request.query_params.get(name) or None


def integer(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = _given(request, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"`{name}` must be an integer from {lo} to {hi}.", param=name) from None
    if not lo <= value <= hi:
        raise InvalidRequest(f"`{name}` must be from {lo} to {hi}, not {value}.", param=name)
    return value


def number(request: Request, name: str) -> float | None:
    """A unix timestamp or similar; absent: None."""
    raw = _given(request, name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 <= value < 1e11:
        raise InvalidRequest(f"`{name}` must be a unix time in seconds.", param=name)
    return value


def text(request: Request, name: str, max_len: int = 200) -> str | None:
    raw = _given(request, name)
    if raw is None:
        return None
    if len(raw) > max_len:
        raise InvalidRequest(f"`{name}` is longer than {max_len} characters.", param=name)
    return raw


def choice(request: Request, name: str, allowed: Collection[str]) -> str | None:
    raw = _given(request, name)
    if raw is None:
        return None
    if raw not in allowed:
        raise InvalidRequest(f"`{name}` must be one of {', '.join(sorted(allowed))}.", param=name)
    return raw


def flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "").lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise InvalidRequest(f"`{name}` must be 1 or 0.", param=name)


def matching(request: Request, name: str, pattern: re.Pattern[str], what: str) -> str | None:
    raw = _given(request, name)
    if raw is None:
        return None
    if len(raw) > 100 or not pattern.fullmatch(raw):
        raise InvalidRequest(f"`{name}` must be {what}.", param=name)
    return raw
