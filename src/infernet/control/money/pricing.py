"""Prices: the operator's rate table, a node's own rates within bounds, and worst-case holds.

Pure functions over a `PriceTable`; the arithmetic itself (price, fee split, rounding) lives
in `infernet.protocol.receipts` so that a node and an offline verifier compute the very same
numbers. Rates are integer micro-USDC per million tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

import msgspec

from infernet.control import bounds
from infernet.protocol import receipts

Rate = Annotated[int, msgspec.Meta(ge=0, le=bounds.MAX_RATE)]

# Chat templates add role markers and, for some models, a default system prompt; this bounds
# what they add on top of the text (generous: an over-hold is released at once).
TEMPLATE_TOKENS_PER_MESSAGE = 8
TEMPLATE_TOKENS_FIXED = 256
IMAGE_TOKENS = 16_384  # the most one image may cost a vision model's prompt (Qwen2.5-VL at its largest)
_json = msgspec.json.Encoder()


def structured_texts(body: Mapping[str, Any]) -> list[str]:
    """Prompt text beyond the messages' content that engines render into the prompt: the
    tool definitions, earlier calls and the ids tool results answer, a response schema."""
    out: list[str] = []
    if body.get("tools"):
        out.append(_json.encode(body["tools"]).decode())
    fmt = body.get("response_format")
    if isinstance(fmt, Mapping) and fmt.get("json_schema"):
        out.append(_json.encode(fmt["json_schema"]).decode())
    for m in body.get("messages") or ():
        if m.get("tool_calls"):
            out.append(_json.encode(m["tool_calls"]).decode())
        if m.get("tool_call_id"):
            out.append(str(m["tool_call_id"]))
    return out


def images_in(body: Mapping[str, Any]) -> int:
    return sum(
        1 for m in body.get("messages") or () if isinstance(m.get("content"), list)
        for p in m["content"] if isinstance(p, Mapping) and p.get("type") == "image_url"
    )


class Rates(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    input: Rate
    output: Rate


# Output about 4x input, as the book prices it; higher tiers serve bigger models and cost more.
DEFAULT_TIERS: dict[str, Rates] = {
    ">=48gb": Rates(input=400_000, output=1_600_000),
    ">=24gb": Rates(input=200_000, output=800_000),
    ">=12gb": Rates(input=100_000, output=400_000),
    ">=8gb": Rates(input=50_000, output=200_000),
    "cpu": Rates(input=10_000, output=40_000),
}


class PriceTable(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The operator's settings; `PUT /api/v1/pricing` or `infernet pricing set` change them."""

    tiers: dict[Literal[">=48gb", ">=24gb", ">=12gb", ">=8gb", "cpu"], Rates] = msgspec.field(default_factory=lambda: dict(DEFAULT_TIERS))
    fee_bps: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 1_500  # 15 %
    min_balance: Annotated[int, msgspec.Meta(ge=0, le=bounds.MAX_MICRO)] = 1_000_000  # 1.00 USDC must be on account to submit
    node_rate_min_pct: Annotated[int, msgspec.Meta(ge=0, le=100)] = 50  # nodes may ask 50 %..
    node_rate_max_pct: Annotated[int, msgspec.Meta(ge=100, le=10_000)] = 200  # ..200 % of the tier rate
    default_output_cap: Annotated[int, msgspec.Meta(ge=1, le=bounds.MAX_OUTPUT_CAP)] = 4_096  # held when max_tokens and context are unknown
    chain: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "base"

    def __post_init__(self) -> None:
        if "cpu" not in self.tiers:
            raise ValueError("the table needs a `cpu` tier: it prices nodes of unknown tier")

    def tier(self, tier: str) -> Rates:
        return self.tiers.get(tier) or self.tiers["cpu"]


DEFAULT = PriceTable()


def decode_table(raw: bytes | str | Mapping[str, Any]) -> PriceTable:
    """A table from JSON; ValueError with a readable reason when it is wrong."""
    try:
        if isinstance(raw, Mapping):
            return msgspec.convert(dict(raw), PriceTable)
        return msgspec.json.decode(raw, type=PriceTable)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ValueError(str(exc)) from None


def encode_table(table: PriceTable) -> dict[str, Any]:
    return msgspec.to_builtins(table)


def node_rates(table: PriceTable, tier: str, asked: Mapping[str, int] | None) -> Rates:
    """The rates a node is paid: its own ask, clamped into the bounds around its tier's rate."""
    base = table.tier(tier)
    if not asked:
        return base

    def clamp(value: Any, ref: int) -> int:
        lo, hi = ref * table.node_rate_min_pct // 100, ref * table.node_rate_max_pct // 100
        if not isinstance(value, int) or isinstance(value, bool):
            return ref
        return min(max(value, lo), hi)

    return Rates(input=clamp(asked.get("input"), base.input), output=clamp(asked.get("output"), base.output))


def prompt_token_bound(kind: str, body: Mapping[str, Any]) -> int:
    """An upper bound on the input tokens, before any tokenizer has seen the request.

    Byte-level BPE tokens cover at least one byte each, so the UTF-8 length of the text
    bounds its tokens; the chat template's markers are bounded on top.
    """
    if kind == "chat":
        msgs = body.get("messages") or []
        size = 0
        for m in msgs:
            content = m.get("content")
            if isinstance(content, list):
                content = " ".join(str(p.get("text") or "") for p in content if isinstance(p, Mapping))
            size += len(str(content or "").encode()) + len(str(m.get("name") or "").encode())
        size += sum(len(t.encode()) for t in structured_texts(body)) + IMAGE_TOKENS * images_in(body)
        return size + TEMPLATE_TOKENS_PER_MESSAGE * len(msgs) + TEMPLATE_TOKENS_FIXED
    if kind == "embedding":
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        return sum(len(str(t or "").encode()) + 2 for t in items)
    prompt = body.get("prompt")
    items = prompt if isinstance(prompt, list) else [prompt]
    return sum(len(str(t or "").encode()) for t in items) + TEMPLATE_TOKENS_FIXED


def output_token_cap(kind: str, body: Mapping[str, Any], context_length: int | None, table: PriceTable) -> int:
    """The most output tokens the job may produce: max_tokens, else the model's context."""
    if kind == "embedding":
        return 0
    asked = body.get("max_tokens")
    if asked:
        return int(asked)
    return int(context_length) if context_length else table.default_output_cap


def worst_case(input_bound: int, output_cap: int, offers: Iterable[Rates]) -> int:
    """The hold: the most the job can cost on the dearest node that could take it."""
    offers = list(offers)
    if not offers:
        return 0
    return receipts.price(input_bound, output_cap, max(r.input for r in offers), max(r.output for r in offers))


def job_price(input_tokens: int, output_tokens: int, rates: Rates, fee_bps: int) -> tuple[int, int, int]:
    """(price, node value, platform fee) in micro-USDC."""
    gross = receipts.price(input_tokens, output_tokens, rates.input, rates.output)
    value, fee = receipts.split(gross, fee_bps)
    return gross, value, fee
