"""The model catalog (data in models.json) and the arithmetic of fitting a model.

VRAM need = weights at the quantization + KV cache for the context + runtime overhead:

    weights  = params x bits_per_weight / 8
    kv cache = 2 (K and V) x layers x kv_heads x head_dim x context x 2 bytes (FP16 cache)
    overhead = 512 MiB (CUDA/ROCm/Metal context, runtime) + 5% of the weights (compute buffers)

A model fits a GPU when the need is at most 95% of the VRAM the tier is based on (the rest
is the driver's, the display's and fragmentation), and a CPU node when it is at most 60%
of RAM (the reference's rule; the OS and everything else need the rest). Pure functions:
nothing here probes or runs anything.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

GIB = 1024**3


@dataclass(frozen=True, slots=True)
class Quant:
    name: str
    bits_per_weight: float
    engines: tuple[str, ...]
    quality: str
    min_compute_capability: str | None = None


@dataclass(frozen=True, slots=True)
class Model:
    id: str
    name: str
    params_b: float
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    context: int
    max_context: int
    kind: str
    modalities: tuple[str, ...]
    names: dict[str, str]
    quantizations: tuple[str, ...]
    note: str = ""

    def kv_bytes_per_token(self, cache_bytes: int = 2) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * cache_bytes


@dataclass(frozen=True, slots=True)
class Need:
    weights: int
    kv_cache: int
    overhead: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.overhead

    @property
    def gib(self) -> float:
        return self.total / GIB


@dataclass(frozen=True, slots=True)
class Fit:
    model: Model
    engine: str | None
    quant: str | None  # the best quantization that fits, or None
    context: int
    need: Need | None  # at `quant`, or at the smallest quantization when nothing fits
    max_context: int  # the longest context that fits at `quant` (0 when nothing fits)
    budget: int  # bytes the model may use on this node
    tokens_per_s: tuple[int, int | None] | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def fits(self) -> bool:
        return self.quant is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.id,
            "name": self.model.name,
            "params_b": self.model.params_b,
            "fits": self.fits,
            "engine": self.engine,
            "quantization": self.quant,
            "context": self.context,
            "max_context": self.max_context,
            "need_gib": round(self.need.gib, 2) if self.need else None,
            "weights_gib": round(self.need.weights / GIB, 2) if self.need else None,
            "kv_cache_gib": round(self.need.kv_cache / GIB, 2) if self.need else None,
            "budget_gib": round(self.budget / GIB, 2),
            "tokens_per_s": list(self.tokens_per_s) if self.tokens_per_s else None,
            "notes": list(self.notes),
        }


@cache
def _data() -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath("models.json").read_text())


@cache
def quantizations() -> dict[str, Quant]:
    return {
        k: Quant(k, v["bits_per_weight"], tuple(v["engines"]), v["quality"], v.get("min_compute_capability"))
        for k, v in _data()["quantizations"].items()
    }


@cache
def models() -> tuple[Model, ...]:
    default = tuple(_data()["default_quantizations"])
    out = []
    for m in _data()["models"]:
        out.append(
            Model(
                id=m["id"], name=m["name"], params_b=m["params_b"], layers=m["layers"], heads=m["heads"],
                kv_heads=m["kv_heads"], head_dim=m["head_dim"], context=m["context"], max_context=m["max_context"],
                kind=m["kind"], modalities=tuple(m["modalities"]), names=dict(m["names"]),
                quantizations=tuple(m.get("quantizations", default)), note=m.get("note", ""),
            )
        )
    return tuple(out)


def formula() -> dict[str, Any]:
    return dict(_data()["formula"])


def _norm(name: str) -> str:
    return name.strip().lower().removesuffix(":latest")


def get(name: str) -> Model | None:
    """A catalog model by id, Ollama tag, Hugging Face repo or GGUF file name; None if unknown."""
    n = _norm(name)
    for m in models():
        if n == m.id or n in (_norm(v) for v in m.names.values()):
            return m
    # Ollama quant tags ("qwen2.5:7b-instruct-q4_K_M"), GGUF files ("SmolLM2-135M-Instruct.Q4_1.gguf").
    for m in models():
        for alias in (m.names.get("ollama", ""), m.names.get("hf", "").split("/")[-1].lower()):
            if alias and (n.startswith(alias + "-") or n.startswith(alias + ".")):
                return m
    return None


def need(model: Model, quant: str, context: int) -> Need:
    f = formula()
    weights = int(model.params_b * 1e9 * quantizations()[quant].bits_per_weight / 8)
    kv = model.kv_bytes_per_token(f["kv_cache_bytes"]) * context
    overhead = int(f["overhead_fixed_mib"] * 2**20 + f["overhead_fraction"] * weights)
    return Need(weights, kv, overhead)


def budget_bytes(vram_mb: int, ram_mb: int) -> int:
    """What one model instance may use: 95% of the tier's VRAM, or 60% of RAM on a CPU node."""
    f = formula()
    if vram_mb > 0:
        return int(vram_mb * 2**20 * f["gpu_budget_fraction"])
    return int(ram_mb * 2**20 * f["cpu_budget_fraction"])


def max_context(model: Model, quant: str, budget: int) -> int:
    base = need(model, quant, 0)
    room = budget - base.total
    if room <= 0:
        return 0
    return min(model.max_context, room // model.kv_bytes_per_token(formula()["kv_cache_bytes"]))


def engines_for(tier: str, vendor: str) -> list[str]:
    """The reference's backend recommendation for a tier and the deciding card's vendor."""
    row = _data()["backends"][tier]
    return list(row.get(vendor, row["default"]))


def backend_reason(tier: str) -> str:
    return _data()["backends"][tier]["why"]


def engine_help(engine: str, model: Model | None = None) -> dict[str, str]:
    raw = _data()["engines"].get(engine, {})
    names = {"ollama": "<model>", "hf": "<model>"} | (model.names if model else {})
    return {k: v.format(**names) for k, v in raw.items()}


def _cc(text: str | None) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def quants_for(model: Model, engine: str, compute_capability: str | None = None) -> list[str]:
    """The model's quantizations this engine runs, best quality (most bits) first."""
    qs = quantizations()
    out = []
    for name in model.quantizations:
        q = qs[name]
        if engine not in q.engines:
            continue
        if q.min_compute_capability and _cc(compute_capability) < _cc(q.min_compute_capability):
            continue
        out.append(name)
    return sorted(out, key=lambda n: -qs[n].bits_per_weight)


def expected_tokens_per_s(tier: str, params_b: float) -> tuple[int, int | None] | None:
    """The reference's throughput range for this size of model on this tier, if it gives one."""
    for row in _data()["throughput"]:
        lo, hi = row["params_b"]
        if row["tier"] == tier and lo <= params_b <= hi:
            return row["tokens_per_s"][0], row["tokens_per_s"][1]
    return None


def fit(model: Model, engines: list[str], budget: int, *, tier: str = "cpu", context: int | None = None, compute_capability: str | None = None) -> Fit:
    """The best (engine, quantization) among `engines` that holds `model` at `context` tokens."""
    ctx = min(context or formula()["default_context"], model.max_context)
    smallest: tuple[Need, str] | None = None
    first_engine = None
    for engine in engines:
        quants = quants_for(model, engine, compute_capability)
        if quants and first_engine is None:
            first_engine = engine
        for q in quants:
            n = need(model, q, ctx)
            if n.total <= budget:
                notes = (f"{quantizations()[q].quality}",) + ((model.note,) if model.note else ())
                return Fit(model, engine, q, ctx, n, max_context(model, q, budget), budget, expected_tokens_per_s(tier, model.params_b), notes)
            if smallest is None or n.total < smallest[0].total:
                smallest = (n, q)
    if smallest is None:
        return Fit(model, None, None, ctx, None, 0, budget, notes=(f"no quantization of it runs on {', '.join(engines)}",))
    # Nothing fits at the default context: the best quantization that fits a shorter one.
    floor = formula()["min_context"]
    for engine in engines:
        for q in quants_for(model, engine, compute_capability):
            longest = max_context(model, q, budget)
            if longest >= floor:
                n = need(model, q, longest)
                notes = (quantizations()[q].quality, f"only with up to {longest} tokens of context")
                return Fit(model, engine, q, longest, n, longest, budget, expected_tokens_per_s(tier, model.params_b), notes)
    n, q = smallest
    why = f"needs {n.gib:.1f} GiB even at {q} with {ctx} tokens of context; this node has {budget / GIB:.1f} GiB for one model"
    return Fit(model, first_engine, None, ctx, n, 0, budget, notes=(why,))


def recommend(tier: str, vendor: str, vram_mb: int, ram_mb: int, *, engine: str | None = None, context: int | None = None, compute_capability: str | None = None) -> list[Fit]:
    """Every catalog model, fitted to this node: what it can serve, how, and how fast."""
    engines = [engine] if engine else engines_for(tier, vendor)
    if not engine and tier == "cpu":
        engines = ["embedded", "llamacpp"]  # on a CPU both read GGUF; the embedded one only SmolLM2
    budget = budget_bytes(vram_mb if tier != "cpu" else 0, ram_mb)
    out = []
    for m in models():
        f = fit(m, engines, budget, tier=tier, context=context, compute_capability=compute_capability)
        if tier == "cpu" and f.fits:
            f = _cpu_policy(f, engines, budget, context)
        out.append(f)
    return out


def _cpu_policy(f: Fit, engines: list[str], budget: int, context: int | None) -> Fit:
    """On a CPU, speed is memory bandwidth: small models, and 7B only heavily quantized."""
    rule = _data()["cpu"]
    m = f.model
    if m.params_b > rule["max_params_b"]:
        return Fit(m, f.engine, None, f.context, f.need, 0, budget, notes=(f"fits in RAM but is too slow on a CPU ({rule['why']})",))
    if m.params_b > 3.5 and f.quant and quantizations()[f.quant].bits_per_weight > rule["max_bits_above_3b"]:
        ctx = f.context
        for q in quants_for(m, f.engine or engines[0]):
            if quantizations()[q].bits_per_weight <= rule["max_bits_above_3b"] and need(m, q, ctx).total <= budget:
                return Fit(m, f.engine, q, ctx, need(m, q, ctx), max_context(m, q, budget), budget, None, (quantizations()[q].quality, "heavily quantized: a CPU reads every weight for every token"))
    return f


def disk_gb(model: Model, quant: str) -> float:
    """Bytes on disk are the weights: the same formula without cache or overhead."""
    return need(model, quant, 0).weights / 1e9


__all__ = [
    "Fit", "Model", "Need", "Quant", "backend_reason", "budget_bytes", "disk_gb", "engine_help", "engines_for",
    "expected_tokens_per_s", "fit", "formula", "get", "max_context", "models", "need", "quantizations",
    "quants_for", "recommend",
]
