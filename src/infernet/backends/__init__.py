"""Inference engines behind one interface: see `base.Backend`."""

from __future__ import annotations

from infernet.backends.base import Backend, BackendError, Chunk, Health

KINDS = ("embedded", "ollama", "vllm", "sglang", "llamacpp", "openai")
CHOICES = ("auto", *KINDS)  # `auto`: see `detect`
DEFAULT_URLS = {
    "ollama": "http://127.0.0.1:11434",
    "vllm": "http://127.0.0.1:8000",
    "sglang": "http://127.0.0.1:30000",
    "llamacpp": "http://127.0.0.1:8080",
}


def create(kind: str, url: str | None = None, model: str | None = None, api_key: str | None = None, *, capacity: int | None = None) -> Backend:
    """The adapter for an engine; `url` defaults to the engine's usual port.

    `capacity` overrides what the engine says about how many requests it runs at once.
    """
    if kind == "embedded":
        from infernet.backends.embedded import EmbeddedBackend

        return EmbeddedBackend()
    if kind == "ollama":
        from infernet.backends.ollama import OllamaBackend

        return OllamaBackend(url or DEFAULT_URLS["ollama"], model=model, parallel=capacity)
    if kind in ("vllm", "sglang", "llamacpp", "openai"):
        from infernet.backends.openai_compat import OpenAICompatBackend

        if kind == "openai" and not url:
            raise ValueError("--backend openai needs --backend-url")
        return OpenAICompatBackend(url or DEFAULT_URLS[kind], engine=kind, model=model, api_key=api_key, capacity=capacity)
    raise ValueError(f"unknown backend {kind!r}; choose one of {', '.join(CHOICES)}")


__all__ = ["Backend", "BackendError", "Chunk", "Health", "KINDS", "CHOICES", "DEFAULT_URLS", "create"]
