"""Money on the command line: `balance`, `pricing`, `receipt get|verify`, `payments`, `payout`."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from infernet import config
from infernet.cli import homes, pricefile
from infernet.cli.app import app, console, err, fail, resolve_client
from infernet.cli.keys import load_identity
from infernet.cli.render import print_json, print_table
from infernet.client import Client, InfernetError
from infernet.protocol import keys, receipts

UrlOpt = Annotated[Optional[str], typer.Option("--url", help="Control plane URL [env INFERNET_URL].")]
KeyOpt = Annotated[Optional[str], typer.Option("--api-key", help="API key [env INFERNET_API_KEY].")]
ControlOpt = Annotated[Optional[str], typer.Option("--control-plane", "-c", envvar="INFERNET_CONTROL_PLANE", help="Control plane URL; default: the one `infernet start` used.")]

receipt_app = typer.Typer(help="Compute Payment Receipts: fetch one, verify one offline.", no_args_is_help=True)
app.add_typer(receipt_app, name="receipt")
pricing_app = typer.Typer(help="The control plane's price table.", invoke_without_command=True)
app.add_typer(pricing_app, name="pricing")


def _pubkey(text: str, what: str) -> str:
    text = text.strip()
    try:
        if text.startswith("npub1"):
            return keys.pubkey_from_npub(text)
        if len(text) == 64:
            return bytes.fromhex(text).hex()
    except ValueError:
        pass
    fail(f"{what} is not an npub or a 64-character hex public key")


@app.command()
def balance(key_id: Annotated[Optional[str], typer.Option("--key", help="Another key's id (admin).")] = None, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Your balance: available, held for running jobs, spent."""
    try:
        with Client(*resolve_client(url, api_key)) as client:
            b = client.balance(key_id)
    except InfernetError as exc:
        fail(exc.message)
    console.print(f"[bold]{b['key_id']}[/]  available {b['available_usdc']} USDC · held {b['held_usdc']} · spent {b['spent_usdc']} (24 h: {b['spent_24h_usdc']})", highlight=False)
    limits = [f"{b['rate_limit']} requests/min" if b.get("rate_limit") else "", f"{b['spend_limit']} USDC/24 h" if b.get("spend_limit") else ""]
    if any(limits):
        console.print("[dim]limits: " + ", ".join(x for x in limits if x) + "[/]", highlight=False)


@pricing_app.callback()
def pricing(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="The table as JSON in USDC, as `pricing set` reads it.")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Show the price table (USDC per million tokens)."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        with Client(*resolve_client(url, api_key)) as client:
            t = client.pricing()
    except InfernetError as exc:
        fail(exc.message)
    if as_json:
        print_json(pricefile.to_usdc(t))
        return
    table = Table("tier", "input USDC/M tokens", "output USDC/M tokens")
    for tier, r in t["tiers"].items():
        table.add_row(tier, receipts.usdc(r["input"]), receipts.usdc(r["output"]))
    console.print(table)
    console.print(
        f"platform fee {t['fee_bps'] / 100:g} % · minimum balance {receipts.usdc(t['min_balance'])} USDC · "
        f"node rates {t['node_rate_min_pct']}-{t['node_rate_max_pct']} % of their tier's · chain {t['chain']}",
        highlight=False,
    )
    console.print("[dim]to change it: `infernet pricing --json > table.json`, edit, `infernet pricing set table.json`[/]")


@pricing_app.command("set")
def pricing_set(file: Annotated[Path, typer.Argument(help="A JSON price table in USDC, as `infernet pricing --json` prints it.")], url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Replace the price table (admin). Amounts in USDC, e.g. "0.04" per million tokens."""
    try:
        data = pricefile.parse(file.read_text())
    except (OSError, ValueError) as exc:
        fail(f"cannot read {file}: {exc}", "amounts are USDC with at most 6 decimals; `infernet pricing --json` prints a table to start from")
    try:
        with Client(*resolve_client(url, api_key)) as client:
            client.set_pricing(data)
    except InfernetError as exc:
        fail(exc.message, "see `infernet pricing --json` for the shape")
    console.print("price table updated")


@receipt_app.command("get")
def receipt_get(job_id: str, out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write to this file.")] = None, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Download a finished job's receipt."""
    try:
        with Client(*resolve_client(url, api_key)) as client:
            doc = client.receipt(job_id)
    except InfernetError as exc:
        fail(exc.message)
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    if out:
        out.write_text(text + "\n")
        console.print(f"saved {out}; check it with `infernet receipt verify {out}`")
    else:
        print(text)


@receipt_app.command("verify")
def receipt_verify(
    file: Annotated[Path, typer.Argument(help="A receipt (`infernet receipt get`) or a payout file (`infernet payout`).")],
    platform: Annotated[Optional[str], typer.Option("--platform", help="The platform key you trust (npub or hex); see GET /api/v1/platform.")] = None,
    node: Annotated[Optional[str], typer.Option("--node", help="The node the receipt must name (npub or hex).")] = None,
) -> None:
    """Check a receipt's two signatures and its arithmetic, offline."""
    try:
        doc = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        fail(f"cannot read {file}: {exc}")
    plat = _pubkey(platform, "--platform") if platform else None
    nodek = _pubkey(node, "--node") if node else None
    is_payout = isinstance(doc, dict) and "payout" in doc
    problems = receipts.verify_payout(doc, platform_pubkey=plat, node_pubkey=nodek) if is_payout else receipts.verify(doc, platform_pubkey=plat, node_pubkey=nodek)
    if problems:
        for p in problems:
            err.print(f"[red]✗[/] {p}", highlight=False)
        fail(f"{file} does NOT verify")
    body = doc["payout"] if is_payout else doc["receipt"]
    if is_payout:
        console.print(f"[green]✓[/] payout {body['payout_id']}: {body['receipt_count']} receipts, {receipts.usdc(body['total'])} USDC to node {keys.npub_from_hex(body['node_pubkey'])}", highlight=False)
    else:
        bill = doc["settlement"]
        console.print(
            f"[green]✓[/] job {body['job_id']}: {bill['input_tokens']} in + {bill['output_tokens']} out tokens of {body['model']} "
            f"({bill['delivered_tokens']} delivered; the node claimed {body['input_tokens']} + {body['output_tokens']}, metered: {bill['metered']}), "
            f"price {receipts.usdc(bill['price'])} USDC (node {receipts.usdc(bill['value'])}, fee {receipts.usdc(bill['fee'])})",
            highlight=False,
        )
        console.print(f"  node      {keys.npub_from_hex(body['node_pubkey'])}", highlight=False)
    console.print(f"  platform  {keys.npub_from_hex(body['platform_pubkey'])}{'' if plat else '  [yellow](not pinned: pass --platform to trust only your control plane)[/]'}", highlight=False)


def _node_client(control_plane: str | None, node: str | None) -> tuple[Client, keys.Identity, homes.NodeHome]:
    nh = homes.one(node)
    saved = nh.config()
    url = control_plane or saved.get("control_plane") or os.environ.get("INFERNET_URL") or config.read_json(config.client_file()).get("url")
    if not url:
        fail("no control plane known for this node", "pass --control-plane URL (or run `infernet start` first)")
    return Client(url, None), load_identity(node=node), nh


@app.command()
def payments(
    control_plane: ControlOpt = None,
    limit: Annotated[int, typer.Option("--receipts", "-n", min=0, max=1000, help="How many recent receipts to list.")] = 20,
    node: homes.NodeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
) -> None:
    """This node's earnings and receipts (a request signed with the node's key)."""
    client, ident, _ = _node_client(control_plane, node)
    try:
        with client:
            p = client.payments(ident, limit)
    except InfernetError as exc:
        fail(exc.message)
    if as_json:
        print_json(p)
        return
    console.print(f"[bold]{ident.npub}[/]", highlight=False, soft_wrap=True)
    console.print(f"unpaid {p['unpaid_usdc']} USDC · paid out {p['paid_usdc']} · earned {p['earned_usdc']} over {p['receipts']} receipts", highlight=False)
    if p["data"]:
        rows = []
        for d in p["data"]:
            r, bill = d["receipt"], d["settlement"]
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["completed_at"]))
            rows.append([r["job_id"], r["model"], f"{bill['input_tokens']}/{bill['output_tokens']}", receipts.usdc(bill["value"]), when, d.get("payout_id") or ""])
        print_table(["job", "model", "tokens in/out", "value USDC", "completed", "payout"], rows, ids=["job", "payout"])


@app.command()
def payout(
    control_plane: ControlOpt = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Where to save the payout file; default: the node's home/payouts.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="Most receipts in one payout.")] = 1000,
    node: homes.NodeOpt = None,
) -> None:
    """Claim unpaid receipts into one payout record signed by the platform and by this node."""
    client, ident, nh = _node_client(control_plane, node)
    try:
        with client:
            doc = client.payout(ident, limit)
    except InfernetError as exc:
        if exc.code == "nothing_to_claim":
            console.print("nothing to claim: no unpaid receipts")
            return
        fail(exc.message)
    problems = receipts.verify_payout(doc, node_pubkey=ident.pubkey)
    if problems:
        fail("the control plane returned a payout that does not verify: " + "; ".join(problems))
    doc["node_signature"] = ident.sign(receipts.digest(doc["payout"]))
    out_dir = out_dir or nh.path / "payouts"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{doc['payout']['payout_id']}.json"
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    rec = doc["payout"]
    console.print(f"[green]claimed[/] {rec['receipt_count']} receipts, {receipts.usdc(rec['total'])} USDC → {path}", highlight=False, soft_wrap=True)
    console.print(f"[dim]check it anywhere with `infernet receipt verify {path}`[/]", highlight=False, soft_wrap=True)
