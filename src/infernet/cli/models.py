"""`infernet models`: what the network serves now (model, kind, nodes, context, price).

`infernet model ...` (singular) manages the models of this machine's own engine; this one
asks the control plane, so it shows only models that some online node offers.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from infernet.cli.app import app, fail, resolve_client
from infernet.cli.render import print_json, print_table
from infernet.client import Client, InfernetError
from infernet.protocol import receipts

models_app = typer.Typer(
    help="What the network serves (`infernet models`); `models recommend`: what fits this machine. This machine's engine: `infernet model`.",
    invoke_without_command=True,
)
app.add_typer(models_app, name="models")


def _price(rates: list[dict[str, Any]], side: str) -> str:
    values = sorted({r[side] for r in rates})
    if not values:
        return "-"
    lo, hi = receipts.usdc(values[0]), receipts.usdc(values[-1])
    return lo if lo == hi else f"{lo}-{hi}"


def offered(models: list[dict[str, Any]], nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry a model: its kind, online nodes, longest context and the nodes' rates
    (what a client pays, per million tokens, in USDC)."""
    out = []
    for m in models:
        serving = [n for n in nodes if n.get("status") == "online" and m["id"] in n.get("models", [])]
        rates = [n["price"] for n in serving if n.get("price")]
        out.append({
            "model": m["id"], "kind": m.get("kind", "chat"), "nodes": m.get("nodes", len(serving)),
            "context_length": m.get("max_model_len"),
            "input_usdc_per_m": _price(rates, "input"), "output_usdc_per_m": _price(rates, "output"),
        })
    return out


@models_app.callback()
def models(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
    url: Annotated[Optional[str], typer.Option("--url", help="Control plane URL [env INFERNET_URL].")] = None,
    api_key: Annotated[Optional[str], typer.Option("--api-key", help="API key [env INFERNET_API_KEY].")] = None,
) -> None:
    """List the models the network serves now: kind, nodes, context, price."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        with Client(*resolve_client(url, api_key)) as client:
            rows = offered(client.models(), client.nodes())
    except InfernetError as exc:
        fail(exc.message, "pass --url and --api-key, or run it where `infernet up` runs")
    if as_json:
        print_json({"models": rows})
        return
    if not rows:
        fail("the network serves no model now", "start a node: `infernet start` (or `infernet up`)")
    print_table(
        ["model", "kind", "nodes", "context", "input USDC/M tokens", "output USDC/M tokens"],
        [[r["model"], r["kind"], r["nodes"], r["context_length"] or "-", r["input_usdc_per_m"], r["output_usdc_per_m"]] for r in rows],
        ids=["model"],
    )
