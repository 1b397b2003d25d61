"""`infernet`: the command line. Commands are thin: parse, call, render."""

from __future__ import annotations

import difflib
import sys

from infernet.cli import (  # noqa: F401  (they register commands)
    chat,
    control_plane,
    doctor,
    hardware,
    keys,
    model,
    models,
    money,
    node,
    nodelogs,
    recommend,
    service,
    setup,
    status,
    top,
    up,
)
from infernet.cli.app import app, err

# How close a one-word first argument must be to a command's name to be taken for a typo
# of it (difflib's ratio: "stauts" ~ "status" 0.83, "chta" ~ "chat" 0.75, "hello" ~ none).
CLOSE = 0.75


def suggest(word: str, commands: set[str]) -> list[str]:
    """Commands `word` looks like a typo of; none for anything that is not one bare word."""
    if not word or any(c.isspace() for c in word) or len(word) < 2:
        return []
    return difflib.get_close_matches(word.lower(), sorted(commands), n=3, cutoff=CLOSE)


def main() -> None:
    """Entry point. `infernet "prompt"` and `echo prompt | infernet` are shorthands for chat;
    a first word that looks like a mistyped command is refused, never sent as a paid prompt."""
    import typer.main

    args = sys.argv[1:]
    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    if args and args[0] == "help":
        sys.argv[1:2] = ["--help"]
    elif args and args[0] not in commands and not args[0].startswith("-"):
        close = suggest(args[0], commands)
        if close:
            err.print(f"[bold red]error:[/] unknown command {args[0]!r}; did you mean {' or '.join(repr(c) for c in close)}?", highlight=False)
            err.print(f'[dim]→ to ask the model, quote it after chat: infernet chat "{args[0]}"; all commands: infernet --help[/]', highlight=False)
            raise SystemExit(2)
        sys.argv[1:1] = ["chat"]
    elif not args and not sys.stdin.isatty():
        sys.argv[1:1] = ["chat"]
    app()


__all__ = ["app", "main"]
