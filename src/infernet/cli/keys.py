"""`infernet keys`: this node's identity (show, export, import) and clients' API keys (`keys api`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from infernet.cli import homes
from infernet.cli.app import app, console, err, fail, resolve_client
from infernet.cli.render import print_json, print_table
from infernet.client import Client, InfernetError
from infernet.protocol import keys as idkeys

keys_app = typer.Typer(
    help="This node's identity (a secp256k1 key shown as Nostr npub/nsec), and clients' API keys (`keys api`).",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")
api_app = typer.Typer(help="API keys for clients (needs an admin key).", no_args_is_help=True)
keys_app.add_typer(api_app, name="api")

UrlOpt = Annotated[Optional[str], typer.Option("--url", help="Control plane URL [env INFERNET_URL].")]
KeyOpt = Annotated[Optional[str], typer.Option("--api-key", help="Admin API key [env INFERNET_API_KEY].")]


def identity_file(node: str | None = None) -> Path:
    """The identity of the node the command speaks of (in `up`'s home: `up`'s node)."""
    from infernet.node import identity_path

    return identity_path(homes.one(node).path)


def load_identity(create: bool = False, node: str | None = None) -> idkeys.Identity:
    path = identity_file(node)
    if not path.exists() and not create:
        fail(f"no node identity in {path.parent}", "`infernet keys show` creates one, `infernet keys import` brings yours")
    try:
        return idkeys.load_or_create(path)
    except (ValueError, KeyError, OSError) as exc:
        fail(f"cannot read the node identity {path}: {exc}", "restore it with `infernet keys import`")


# -- node identity ------------------------------------------------------------------------


@keys_app.command("show")
def show(node: homes.NodeOpt = None) -> None:
    """Show this node's public identity (npub, hex); creates one on first use."""
    nh = homes.one(node)
    path = identity_file(node)
    created = not path.exists()
    ident = load_identity(create=True, node=node)
    if nh.from_up:
        console.print(f"[dim]node {nh.label} of `infernet up`[/]", highlight=False)
    console.print(f"[bold]npub[/]    {ident.npub}", highlight=False, soft_wrap=True)
    console.print(f"[bold]pubkey[/]  {ident.pubkey}", highlight=False, soft_wrap=True)
    console.print(f"[dim]file    {path}{'  (new identity created)' if created else ''}[/]", highlight=False, soft_wrap=True)


@keys_app.command("export")
def export(
    as_hex: Annotated[bool, typer.Option("--hex", help="Print the secret as hex instead of nsec.")] = False,
    node: homes.NodeOpt = None,
) -> None:
    """Print this node's SECRET key (nsec) for a backup; anyone holding it can act as the node."""
    ident = load_identity(node=node)
    err.print("[yellow]this is the node's secret key: keep it private[/]")
    sys.stdout.write((ident.secret.hex() if as_hex else ident.nsec) + "\n")


@keys_app.command("import")
def import_key(
    secret: Annotated[Optional[str], typer.Argument(help="nsec1... or 64 hex characters; read from stdin when omitted (keeps it out of shell history).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a different existing identity.")] = False,
    node: homes.NodeOpt = None,
) -> None:
    """Use an existing identity for this node (stored with mode 0600)."""
    text = (secret if secret is not None else sys.stdin.readline()).strip()
    if not text:
        fail("no key given", "pass an nsec or hex secret, or pipe it in: `infernet keys import < key.txt`")
    try:
        ident = idkeys.Identity.from_nsec(text) if text.lower().startswith("nsec1") else idkeys.Identity.from_hex(text)
    except ValueError as exc:
        fail(f"not a usable secret key: {exc}", "give an nsec1... string or 64 hex characters (an npub is public; import needs the secret)")
    path = identity_file(node)
    if path.exists() and not force:
        current = load_identity(node=node)
        if current.secret != ident.secret:
            fail(f"{path} already holds another identity ({current.npub})", "pass --force to replace it (export the old one first)")
    idkeys.save(path, ident)
    console.print(f"imported {ident.npub}", highlight=False)
    if homes.one(node).from_up:
        console.print("[dim]restart `infernet up` for its node to use it[/]")


# -- API keys -----------------------------------------------------------------------------


@api_app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="A label for the key.")] = "",
    admin: Annotated[bool, typer.Option("--admin", help="Create an admin key.")] = False,
    rate_limit: Annotated[Optional[int], typer.Option("--rate-limit", min=1, help="Requests per minute.")] = None,
    spend_limit: Annotated[Optional[str], typer.Option("--spend-limit", help="USDC per rolling 24 h, e.g. 5.00.")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Create an API key; it is shown once."""
    try:
        with Client(*resolve_client(url, api_key)) as client:
            data = client.create_key(name, "admin" if admin else "client", rate_limit, spend_limit)
    except InfernetError as exc:
        fail(exc.message)
    console.print(f"{data['id']}  {data['key']}", highlight=False)
    if not admin:
        err.print(f"[dim]fund it with `infernet keys api credit {data['id']} 10.00`[/]")


@api_app.command("list")
def list_keys(url: UrlOpt = None, api_key: KeyOpt = None, as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False) -> None:
    """List API keys (never their secrets), with balances and limits."""
    try:
        with Client(*resolve_client(url, api_key)) as client:
            rows = client.list_keys()
    except InfernetError as exc:
        fail(exc.message)
    if as_json:
        print_json({"keys": rows})
        return
    print_table(
        ["id", "name", "role", "balance (USDC)", "rate/min", "spend/24h", "revoked"],
        [[k["id"], k["name"], k["role"], k.get("balance", ""), k.get("rate_limit") or "", k.get("spend_limit") or "", "yes" if k["revoked"] else ""] for k in rows],
        ids=["id"],
    )


@api_app.command("revoke")
def revoke(key_id: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Revoke an API key; it stops working at once."""
    try:
        with Client(*resolve_client(url, api_key)) as client:
            client.revoke_key(key_id)
    except InfernetError as exc:
        fail(exc.message)
    console.print(f"revoked {key_id}")


@api_app.command("limits")
def limits(
    key_id: str,
    rate_limit: Annotated[Optional[int], typer.Option("--rate-limit", min=0, help="Requests per minute; 0 removes the limit.")] = None,
    spend_limit: Annotated[Optional[str], typer.Option("--spend-limit", help="USDC per rolling 24 h; 0 removes the limit.")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Set a key's rate limit and spend limit."""
    body: dict[str, object] = {}
    if rate_limit is not None:
        body["rate_limit"] = rate_limit or None
    if spend_limit is not None:
        body["spend_limit"] = None if spend_limit.strip() in ("0", "0.0", "none") else spend_limit
    if not body:
        fail("nothing to change", "pass --rate-limit and/or --spend-limit")
    try:
        with Client(*resolve_client(url, api_key)) as client:
            data = client.set_limits(key_id, **body)
    except InfernetError as exc:
        fail(exc.message)
    console.print(f"{key_id}: rate limit {data['rate_limit'] or 'none'}/min, spend limit {data['spend_limit'] or 'none'} USDC/24h", highlight=False)


@api_app.command("credit")
def credit(
    key_id: str,
    amount: Annotated[str, typer.Argument(help="USDC to add, e.g. 10.00 (at most 6 decimals).")],
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Add funds to a client's balance (an admin stands in for a payment gateway)."""
    try:
        with Client(*resolve_client(url, api_key)) as client:
            data = client.credit(key_id, amount)
    except InfernetError as exc:
        fail(exc.message)
    console.print(f"credited {data['credited']} USDC to {key_id}; balance {data['balance']} USDC", highlight=False)
