"""Find the inference engines running on this machine (`--backend auto`).

Every default port is probed at once with a short timeout, and each answer is identified by
what the server says, not by its port (SGLang on :8000 is still SGLang). The pick follows
the reference's per-tier advice: vLLM or SGLang for throughput at >=48gb, Ollama for most
tiers, llama.cpp for GGUF on small GPUs and CPUs, and the embedded backend when nothing
answers. An engine with no model loaded is reported but not picked.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx

DEFAULT_PORTS = {"ollama": 11434, "vllm": 8000, "sglang": 30000, "llamacpp": 8080}

PREFERENCE = {
    ">=48gb": ("vllm", "sglang", "ollama", "llamacpp"),
    ">=24gb": ("ollama", "vllm", "sglang", "llamacpp"),
    ">=12gb": ("ollama", "llamacpp", "vllm", "sglang"),
    ">=8gb": ("ollama", "llamacpp", "vllm", "sglang"),
    "cpu": ("ollama", "llamacpp", "vllm", "sglang"),
}


@dataclass(frozen=True)
class Found:
    kind: str  # ollama | vllm | sglang | llamacpp | openai
    url: str
    ready: bool
    detail: str
    models: tuple[str, ...] = field(default_factory=tuple)


async def _json(client: httpx.AsyncClient, path: str) -> tuple[int, Any]:
    r = await client.get(path)
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, None


def _ids(models: Any) -> tuple[str, ...]:
    data = models.get("data") if isinstance(models, dict) else None
    return tuple(m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)) if isinstance(data, list) else ()


async def identify(url: str, timeout: float = 0.5) -> Found | None:
    """What engine answers at `url`, or None when nothing does."""
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as c:
        try:
            status, ver = await _json(c, "/api/version")
            if status == 200 and isinstance(ver, dict) and "version" in ver:
                _, tags = await _json(c, "/api/tags")
                names = tuple(m.get("name", "") for m in (tags or {}).get("models", []) if isinstance(m, dict))
                return Found("ollama", url, True, f"Ollama {ver['version']}, {len(names)} model(s)", names)
            status, info = await _json(c, "/get_model_info")
            if status == 200 and isinstance(info, dict) and "model_path" in info:
                ok = (await c.get("/health")).status_code == 200
                return Found("sglang", url, ok, f"SGLang serving {info['model_path']}", (info["model_path"],))
            status, props = await _json(c, "/props")
            if status in (200, 503) and isinstance(props, dict) and ("total_slots" in props or "error" in props):
                health = await c.get("/health")
                _, models = await _json(c, "/v1/models")
                ok = health.status_code == 200
                return Found("llamacpp", url, ok, f"llama.cpp server, {props.get('total_slots', '?')} slot(s)" if ok else "llama.cpp server, still loading", _ids(models))
            status, models = await _json(c, "/v1/models")
            if status != 200 or not isinstance(models, dict):
                return Found("openai", url, False, f"something answers at {url}, but not an engine infernet knows") if status else None
            ids = _ids(models)
            owners = {m.get("owned_by") for m in models.get("data", []) if isinstance(m, dict)}
            if "vllm" in owners:
                _, version = await _json(c, "/version")
                ok = (await c.get("/health")).status_code == 200
                return Found("vllm", url, ok, f"vLLM {(version or {}).get('version', '')}".strip(), ids)
            if owners & {"llamacpp", "me"} or any(i.endswith(".gguf") for i in ids):
                return Found("llamacpp", url, True, "llama.cpp-compatible server (llama-cpp-python)", ids)
            return Found("openai", url, True, "an OpenAI-compatible server", ids)
        except httpx.HTTPError:
            return None


async def probe(host: str = "127.0.0.1", ports: dict[str, int] | None = None, timeout: float = 0.5) -> list[Found]:
    """Probe each default port at once; what answered, in the order of `ports`."""
    urls = [f"http://{host}:{port}" for port in (ports or DEFAULT_PORTS).values()]
    answers = await asyncio.gather(*(identify(u, timeout) for u in urls))
    return [a for a in answers if a is not None]


def choose(found: list[Found], tier: str = "cpu") -> Found | None:
    """The engine the reference advises for this tier, among the ready ones with a model."""
    usable = [f for f in found if f.ready and f.models and f.kind != "openai"]
    for kind in PREFERENCE.get(tier, PREFERENCE["cpu"]):
        for f in usable:
            if f.kind == kind:
                return f
    return None


async def detect(tier: str = "cpu", host: str = "127.0.0.1", ports: dict[str, int] | None = None, timeout: float = 0.5) -> tuple[str, str | None, list[Found]]:
    """(backend kind, url, everything found). Falls back to the embedded backend."""
    found = await probe(host, ports, timeout)
    pick = choose(found, tier)
    if pick is None:
        return "embedded", None, found
    return pick.kind, pick.url, found
