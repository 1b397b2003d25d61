"""`infernet keys`: API keys (admin) and the node's identity."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from infernet.cli.app import app, console, fail, resolve_client
from infernet.client import Client, InfernetError

keys_app = typer.Typer(help="API keys for clients (needs an admin key).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

UrlOpt = Annotated[Optional[str], typer.Option("--url", help="Control plane URL [env INFERNET_URL].")]
KeyOpt = Annotated[Optional[str], typer.Option("--api-key", help="Admin API key [env INFERNET_API_KEY].")]


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="A label for the key.")] = "",
    admin: Annotated[bool, typer.Option("--admin", help="Create an admin key.")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Create an API key; it is shown once."""
    try:
        with Client(*resolve_client(url, api_key)) as client:
            data = client.create_key(name, "admin" if admin else "client")
    except InfernetError as exc:
        fail(exc.message)
    console.print(f"{data['id']}  {data['key']}", highlight=False)


@keys_app.command("list")
def list_keys(url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """List API keys (never their secrets)."""
    try:
        with Client(*resolve_client(url, api_key)) as client:
            rows = client.list_keys()
    except InfernetError as exc:
        fail(exc.message)
    table = Table("id", "name", "role", "revoked")
    for k in rows:
        table.add_row(k["id"], k["name"], k["role"], "yes" if k["revoked"] else "")
    console.print(table)


@keys_app.command("revoke")
def revoke(key_id: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Revoke an API key; it stops working at once."""
    try:
        with Client(*resolve_client(url, api_key)) as client:
            client.revoke_key(key_id)
    except InfernetError as exc:
        fail(exc.message)
    console.print(f"revoked {key_id}")
