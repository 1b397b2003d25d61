"""`infernet`: the command line. Commands are thin: parse, call, render."""

from __future__ import annotations

import sys

from infernet.cli import (  # noqa: F401  (they register commands)
    chat,
    doctor,
    hardware,
    keys,
    model,
    money,
    node,
    recommend,
    setup,
    up,
)
from infernet.cli.app import app


def main() -> None:
    """Entry point. `infernet "prompt"` and `echo prompt | infernet` are shorthands for chat."""
    import typer.main

    args = sys.argv[1:]
    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    if args and args[0] not in commands and not args[0].startswith("-"):
        sys.argv[1:1] = ["chat"]
    elif not args and not sys.stdin.isatty():
        sys.argv[1:1] = ["chat"]
    app()


__all__ = ["app", "main"]
