"""The Typer app and the few helpers every command shares."""

from __future__ import annotations

import os
from typing import Annotated, NoReturn

import typer
from rich.console import Console

app = typer.Typer(
    name="infernet",
    help="infernet: a decentralized GPU inference network. `infernet up` runs one on this machine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


def _log_format(value: str) -> str:
    if value not in ("text", "json"):
        raise typer.BadParameter("choose text or json")
    return value


LogFormatOpt = Annotated[str, typer.Option("--log-format", envvar="INFERNET_LOG_FORMAT", callback=_log_format, help="Log lines as `text` or `json` (one object a line, with job and node ids).")]


def fail(message: str, hint: str | None = None, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    if hint:
        err.print(f"[dim]→ {hint}[/]", highlight=False)
    raise typer.Exit(code)


def resolve_client(url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """--url/--api-key, else INFERNET_URL/INFERNET_API_KEY, else what `infernet up` left."""
    from infernet import config

    saved = config.read_json(config.client_file())
    url = url or os.environ.get("INFERNET_URL") or saved.get("url")
    api_key = api_key or os.environ.get("INFERNET_API_KEY") or saved.get("api_key")
    if not url:
        fail(
            f"no control plane found for INFERNET_HOME={config.home()}",
            "run `infernet up` in another terminal, or pass --url and --api-key",
        )
    return url, api_key
