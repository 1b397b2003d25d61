"""`infernet model list | pull | rm | use | show`: the models of this node's engine,
through the engine's own API (never by shelling out to its CLI)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from infernet import config
from infernet.backends import CHOICES, Backend, BackendError, create
from infernet.backends.fit import check_fit, human
from infernet.cli.app import app, console, fail

model_app = typer.Typer(help="Models: list, pull, rm, use, show on this node's engine; recommend what fits this machine.", no_args_is_help=True)
app.add_typer(model_app, name="model")

T = TypeVar("T")
BackendOpt = Annotated[Optional[str], typer.Option("--backend", "-b", help=f"One of: {', '.join(CHOICES)}; default: the node's.")]
UrlOpt = Annotated[Optional[str], typer.Option("--backend-url", help="Engine URL; default: the node's, else its usual port.")]


def _run(backend: str | None, url: str | None, work: Callable[[Backend, str], Awaitable[T]]) -> T:
    """Open the node's engine (as `infernet start` saved it, else auto-detected), run `work`."""
    saved = config.read_json(config.home() / "node.json")
    kind = backend or saved.get("backend") or "auto"
    url = url or (saved.get("backend_url") if kind == saved.get("backend") else None)
    if kind not in CHOICES:
        fail(f"unknown backend {kind!r}", f"choose one of {', '.join(CHOICES)}")

    async def main() -> T:
        nonlocal kind, url
        if kind == "auto":
            from infernet.backends.detect import detect
            from infernet.hardware import summary

            kind, url, _ = await detect(summary()["tier"])
        engine = create(kind, url)
        try:
            return await work(engine, kind)
        finally:
            await engine.aclose()

    try:
        return asyncio.run(main())
    except BackendError as exc:
        fail(exc.message, _hint(exc, kind))


def _hint(exc: BackendError, kind: str) -> str | None:
    if exc.code == "backend_unavailable":
        return f"is the {kind} engine running? pass --backend and --backend-url to point at it"
    if exc.code == "model_not_found":
        return "see what is installed with `infernet model list`"
    return None


def _managed(engine: Backend, kind: str, verb: str) -> Any:
    if not hasattr(engine, "pull"):
        fail(
            f"the {kind} backend cannot {verb} models over its API",
            "vLLM, SGLang and llama.cpp serve the model they were started with: restart the engine with another model"
            if kind != "embedded" else "the embedded backend ships its models inside the package",
        )
    return engine


@model_app.command("list")
def list_models(backend: BackendOpt = None, backend_url: UrlOpt = None) -> None:
    """What the engine has, and which are loaded in memory now."""
    chosen = config.read_json(config.home() / "node.json").get("model")

    async def work(engine: Backend, kind: str) -> Table:
        table = Table("name", "kind", "context", "size", "params", "quant", "loaded", title=f"models on {kind}")
        if hasattr(engine, "installed"):
            tags = await engine.installed()  # type: ignore[attr-defined]
            ads = {m.name: m for m in await engine.models()}
            loaded = {m.get("name") for m in await engine.loaded()}  # type: ignore[attr-defined]
            for t in tags:
                name, details = t.get("name") or t.get("model"), t.get("details") or {}
                ad = ads.get(name)
                table.add_row(("* " if name == chosen else "") + name, ad.kind if ad else "", str(ad.context_length or "") if ad else "",
                              human(int(t.get("size") or 0)), details.get("parameter_size", ""), details.get("quantization_level", ""), "yes" if name in loaded else "")
        else:
            for m in await engine.models():
                table.add_row(("* " if m.name == chosen else "") + m.name, m.kind, str(m.context_length or ""), "", "", "", "yes")
        return table

    console.print(_run(backend, backend_url, work))


@model_app.command("pull")
def pull(
    name: str,
    force: Annotated[bool, typer.Option("--force", help="Pull even if it does not fit this machine.")] = False,
    backend: BackendOpt = None,
    backend_url: UrlOpt = None,
) -> None:
    """Download a model into the engine, with progress; refuses one that will not fit."""

    async def work(engine: Backend, kind: str) -> str:
        manager = _managed(engine, kind, "pull")
        layers: dict[str, tuple[int, int]] = {}  # digest -> (completed, total)
        with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=False) as bar:
            task = bar.add_task(f"{name}: starting", total=None)
            stream = manager.pull(name)
            try:
                async for event in stream:
                    status = str(event.get("status", ""))
                    if event.get("digest") and event.get("total"):
                        layers[event["digest"]] = (int(event.get("completed") or 0), int(event["total"]))
                        total = sum(t for _, t in layers.values())
                        fit = check_fit(total)
                        if not fit.ok and not force:
                            return f"refused: {name} is {fit.reason}"
                        bar.update(task, total=total, completed=sum(c for c, _ in layers.values()))
                    bar.update(task, description=f"{name}: {status}")
            finally:
                await stream.aclose()  # on refusal this aborts the download
        return f"pulled {name}"

    result = _run(backend, backend_url, work)
    if result.startswith("refused"):
        fail(result.removeprefix("refused: "), "pass --force to pull it anyway, or pick a smaller or more quantized model")
    console.print(f"[green]{result}[/]; a running node advertises it within one heartbeat")


@model_app.command("rm")
def rm(name: str, backend: BackendOpt = None, backend_url: UrlOpt = None) -> None:
    """Delete a model from the engine."""

    async def work(engine: Backend, kind: str) -> None:
        await _managed(engine, kind, "remove").delete(name)

    _run(backend, backend_url, work)
    console.print(f"removed {name}; a running node stops advertising it within one heartbeat")


@model_app.command("use")
def use(name: str, backend: BackendOpt = None, backend_url: UrlOpt = None) -> None:
    """Serve only this model from now on (saved for `infernet start`)."""

    async def work(engine: Backend, kind: str) -> str:
        names = [m.name for m in await engine.models()]
        match = next((n for n in names if n == name or n == f"{name}:latest"), None)
        if match is None:
            raise BackendError(f"{kind} has no model {name!r} (it has: {', '.join(names) or 'none'})", code="model_not_found")
        return match

    match = _run(backend, backend_url, work)
    path = config.home() / "node.json"
    config.write_private(path, {**config.read_json(path), "model": match})
    console.print(f"the node will serve {match}; restart it to apply: `infernet stop && infernet start`")


@model_app.command("show")
def show(name: str, backend: BackendOpt = None, backend_url: UrlOpt = None) -> None:
    """Details of one model: family, size, trained and served context, capabilities."""

    async def work(engine: Backend, kind: str) -> Table:
        table = Table(show_header=False, title=name)
        ads = {m.name: m for m in await engine.models()}
        ad = ads.get(name) or ads.get(f"{name}:latest")
        if hasattr(engine, "show"):
            data = await engine.show(name)  # type: ignore[attr-defined]
            details = data.get("details") or {}
            for key, value in (
                ("family", details.get("family")), ("parameters", details.get("parameter_size")),
                ("quantization", details.get("quantization_level")), ("format", details.get("format")),
                ("trained context", data.get("context_length")), ("served context", ad.context_length if ad else None),
                ("kind", data.get("kind")), ("capabilities", ", ".join(data.get("capabilities") or [])),
            ):
                table.add_row(key, str(value) if value not in (None, "") else "-")
        elif ad is not None:
            health = await engine.health()
            for key, value in (("kind", ad.kind), ("context", ad.context_length), ("engine", health.detail)):
                table.add_row(key, str(value) if value is not None else "-")
        else:
            raise BackendError(f"{kind} has no model {name!r}", code="model_not_found")
        return table

    console.print(_run(backend, backend_url, work))
