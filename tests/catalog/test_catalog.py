"""The catalog's data and arithmetic, checked against the reference's claims."""

from __future__ import annotations

import pytest

from infernet import catalog
from infernet.hardware.checks import STORAGE_GB

GIB = 1024**3
REFERENCE_MODELS = [
    "qwen2.5-0.5b-instruct", "qwen2.5-1.5b-instruct", "qwen2.5-3b-instruct", "qwen2.5-7b-instruct", "qwen2.5-14b-instruct",
    "qwen2.5-32b-instruct", "qwen2.5-72b-instruct", "llama-3.1-8b-instruct", "llama-3.1-70b-instruct",
    "deepseek-coder-6.7b-instruct", "deepseek-coder-33b-instruct", "smollm2-135m-instruct",
]


def test_catalog_holds_the_reference_models_and_a_multimodal_one():
    ids = {m.id for m in catalog.models()}
    assert set(REFERENCE_MODELS) <= ids
    assert any("image" in m.modalities for m in catalog.models())


def test_every_model_is_well_formed():
    qs = catalog.quantizations()
    for m in catalog.models():
        assert m.params_b > 0 and m.layers > 0 and 0 < m.kv_heads <= m.heads and m.head_dim in (64, 128)
        assert m.context <= m.max_context and m.quantizations and set(m.quantizations) <= set(qs)


def test_formula_by_hand():
    m = catalog.get("llama-3.1-8b-instruct")
    n = catalog.need(m, "q4_k_m", 8192)
    assert abs(n.weights - 8.03e9 * 4.85 / 8) <= 1
    assert n.kv_cache == 2 * 32 * 8 * 128 * 2 * 8192 == 1 * GIB
    assert n.overhead == int(512 * 2**20 + 0.05 * n.weights)


def test_aliases():
    assert catalog.get("qwen2.5:7b").id == "qwen2.5-7b-instruct"
    assert catalog.get("qwen2.5:7b-instruct-q4_K_M").id == "qwen2.5-7b-instruct"
    assert catalog.get("Qwen/Qwen2.5-72B-Instruct").id == "qwen2.5-72b-instruct"
    assert catalog.get("llama3.1:70b").id == "llama-3.1-70b-instruct"
    assert catalog.get("SmolLM2-135M-Instruct.Q4_1.gguf").id == "smollm2-135m-instruct"
    assert catalog.get("gpt-4o") is None


@pytest.mark.parametrize(("size", "fp16", "q4"), STORAGE_GB)
def test_disk_formula_agrees_with_the_reference_storage_table(size, fp16, q4):
    m = min(catalog.models(), key=lambda m: abs(m.params_b - size))
    assert catalog.disk_gb(m, "fp16") == pytest.approx(fp16 * m.params_b / size, rel=0.15)
    assert catalog.disk_gb(m, "q4_k_m") == pytest.approx(q4 * m.params_b / size, rel=0.15)


def _fit(model, vram_mb, engines=("ollama", "llamacpp"), ctx=None):
    return catalog.fit(catalog.get(model), list(engines), catalog.budget_bytes(vram_mb, 0), context=ctx)


def test_70b_at_q4_does_not_fit_24gb_and_only_2_bit_with_short_context_does():
    assert catalog.need(catalog.get("llama-3.1-70b-instruct"), "q4_k_m", 8192).gib > 40
    f = _fit("llama-3.1-70b-instruct", 24564)
    assert f.quant == "iq2_xs" and 2048 <= f.max_context < 8192
    assert any("context" in n for n in f.notes)


def test_70b_fits_a_48gb_card_at_q4_with_8k_context():
    f = _fit("llama-3.1-70b-instruct", 49140)
    assert f.quant == "q4_k_m" and f.context == 8192 and f.max_context >= 8192


def test_reference_24gb_claims_honestly():
    # "14B-33B at full precision": 14B needs Q8 on a 24 GB card, 33B needs Q4.
    assert _fit("qwen2.5-14b-instruct", 24564).quant == "q8_0"
    assert _fit("deepseek-coder-33b-instruct", 24564).quant == "q4_k_m"
    assert _fit("qwen2.5-32b-instruct", 24564).quant == "q4_k_m"


def test_reference_8gb_and_12gb_claims():
    assert _fit("qwen2.5-7b-instruct", 8188).quant in ("q6_k", "q5_k_m", "q4_k_m")  # not FP16 on 8 GB
    assert _fit("qwen2.5-7b-instruct", 12288).quant == "q8_0"
    assert _fit("llama-3.1-70b-instruct", 8188).fits is False


def test_more_context_costs_memory():
    m = catalog.get("qwen2.5-7b-instruct")
    assert catalog.need(m, "q4_k_m", 32768).total > catalog.need(m, "q4_k_m", 8192).total
    assert _fit("qwen2.5-7b-instruct", 8188, ctx=131072).max_context < 131072


def test_vllm_uses_its_own_quantizations():
    f = catalog.fit(catalog.get("llama-3.1-70b-instruct"), ["vllm"], catalog.budget_bytes(49140, 0))
    assert f.quant == "awq"
    f = catalog.fit(catalog.get("qwen2.5-32b-instruct"), ["vllm"], catalog.budget_bytes(81559, 0), compute_capability="9.0")
    assert f.quant == "fp16"
    f = catalog.fit(catalog.get("qwen2.5-72b-instruct"), ["vllm"], catalog.budget_bytes(81559, 0), compute_capability="9.0")
    assert f.quant == "fp8"  # Hopper runs FP8; an A100 (8.0) would not
    f = catalog.fit(catalog.get("qwen2.5-72b-instruct"), ["vllm"], catalog.budget_bytes(81920, 0), compute_capability="8.0")
    assert f.quant == "awq"


@pytest.mark.parametrize(
    ("tier", "vendor", "engines"),
    [(">=48gb", "nvidia", ["vllm", "sglang"]), (">=48gb", "apple", ["ollama", "llamacpp"]), (">=24gb", "nvidia", ["ollama", "vllm"]),
     (">=12gb", "nvidia", ["ollama", "llamacpp"]), (">=8gb", "amd", ["ollama", "llamacpp"]), ("cpu", "cpu", ["embedded", "llamacpp", "ollama"])],
)
def test_backends_per_tier_and_vendor(tier, vendor, engines):
    assert catalog.engines_for(tier, vendor) == engines


def test_throughput_ranges_from_the_reference():
    assert catalog.expected_tokens_per_s(">=48gb", 70.6) == (50, 150)
    assert catalog.expected_tokens_per_s(">=48gb", 8.03) == (200, None)
    assert catalog.expected_tokens_per_s(">=24gb", 14.7) == (30, 80)
    assert catalog.expected_tokens_per_s(">=24gb", 33.3) == (15, 30)
    assert catalog.expected_tokens_per_s(">=12gb", 7.62) == (40, 90)
    assert catalog.expected_tokens_per_s(">=8gb", 7.62) == (20, 50)
    assert catalog.expected_tokens_per_s("cpu", 0.1345) is None


def test_cpu_tier_serves_small_models_and_heavily_quantized_7b():
    fits = {f.model.id: f for f in catalog.recommend("cpu", "cpu", 0, 24 * 1024)}
    assert fits["smollm2-135m-instruct"].engine == "embedded" and fits["smollm2-135m-instruct"].quant == "q4_1"
    assert fits["qwen2.5-7b-instruct"].quant == "q4_k_m"
    assert not fits["qwen2.5-14b-instruct"].fits and "too slow" in fits["qwen2.5-14b-instruct"].notes[0]
    # The CPU budget is 60% of RAM.
    assert fits["qwen2.5-7b-instruct"].budget == int(24 * 1024 * 2**20 * 0.6)


def test_recommend_for_a_flagship_node():
    fits = {f.model.id: f for f in catalog.recommend(">=48gb", "nvidia", 81559, 256 * 1024, compute_capability="9.0")}
    assert fits["llama-3.1-70b-instruct"].engine == "vllm" and fits["llama-3.1-70b-instruct"].tokens_per_s == (50, 150)
    assert fits["qwen2.5-vl-72b-instruct"].fits
