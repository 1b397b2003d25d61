"""Which node the node commands speak of.

A node keeps its identity, config, status and log in its home. `infernet start` uses
INFERNET_HOME itself; `infernet up` gives each node it runs a home of its own,
`INFERNET_HOME/nodes/N`, and lists them in `INFERNET_HOME/nodes.json`. So in `up`'s home
the node commands (`status`, `doctor`, `keys`, `payments`, `payout`, `logs`, `top`) find
`up`'s nodes there, and `--node N` (a number or a name) picks one when there are several.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from infernet import config
from infernet.cli.app import fail

NODES_FILE = "nodes.json"
NodeOpt = Annotated[Optional[str], typer.Option("--node", help="Which node, when `infernet up` runs several here: its number or name.")]


@dataclass(frozen=True)
class NodeHome:
    path: Path
    label: str  # "local-0" for `up`'s node 0; "node" for the home's own
    index: int | None = None  # `up`'s number for it

    @property
    def from_up(self) -> bool:
        return self.index is not None

    @property
    def log(self) -> Path:
        return self.path / "node.log"

    def config(self) -> dict[str, Any]:
        return config.read_json(self.path / "node.json")


def write_up_nodes(home: Path, children: list[tuple[int, Path, str]], url: str) -> None:
    """What `up` leaves for the node commands: its nodes' numbers, homes and names."""
    config.write_private(home / NODES_FILE, {
        "up_pid": os.getpid(), "url": url,
        "nodes": [{"index": i, "home": str(p), "name": name} for i, p, name in children],
    })


def all_nodes(home: Path | None = None) -> list[NodeHome]:
    """The home's own node (configured by `start` or `setup`), then `up`'s nodes. A home
    with neither gives its own, so `keys show` there still makes an identity to start with."""
    home = home or config.home()
    listed = config.read_json(home / NODES_FILE)
    # A node.json without a control plane (`model use` writes one) configures no node.
    own = bool(config.read_json(home / "node.json").get("control_plane"))
    found = [NodeHome(home, "node")] if own or not listed else []
    for entry in listed.get("nodes", []):
        try:
            found.append(NodeHome(Path(entry["home"]), entry.get("name") or f"local-{entry['index']}", int(entry["index"])))
        except (KeyError, TypeError, ValueError):
            continue  # a hand-edited entry: skip it rather than fail every command
    return found


def select(node: str | None, *, several: bool = False) -> list[NodeHome]:
    """The nodes a command speaks of: the one `--node` names, else every node when
    `several`, else the only one (and a clear error when there are more)."""
    nodes = all_nodes()
    if not nodes:
        fail(f"no node runs from {config.home()}: `infernet up` there runs a control plane only", "start a node with `infernet start`, or `infernet up --nodes 1`")
    if node is not None:
        for n in nodes:
            if node in (str(n.index), n.label, str(n.path)):
                return [n]
        fail(f"no node {node!r} here", f"choose one of: {_choices(nodes)}" if nodes else "start one with `infernet start` or `infernet up`")
    if len(nodes) > 1 and not several:
        fail(f"{len(nodes)} nodes run from {config.home()}", f"pass --node with one of: {_choices(nodes)}")
    return nodes


def one(node: str | None) -> NodeHome:
    return select(node)[0]


def _choices(nodes: list[NodeHome]) -> str:
    return ", ".join(f"{n.index} ({n.label})" if n.from_up else n.label for n in nodes)
