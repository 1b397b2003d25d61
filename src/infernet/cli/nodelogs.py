"""`infernet logs [-f] [--lines N]`: the node's log, as `tail` would show it.

Several nodes (`infernet up --nodes 3`) are shown together, each line prefixed with its
node's name, unless `--node` picks one. Lines go out as they are (no markup), so they can
be piped into grep or jq (`--log-format json`).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from infernet.cli import homes
from infernet.cli.app import app, err, fail

POLL_S = 0.25
BLOCK = 64 * 1024


def tail(path: Path, n: int) -> tuple[list[bytes], int]:
    """The last `n` lines of a file, read from its end (a log may be large), and the
    offset they end at, where following goes on."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        end = pos = fh.tell()
        data = b""
        while n > 0 and pos > 0 and data.count(b"\n") <= n:
            step = min(BLOCK, pos)
            pos -= step
            fh.seek(pos)
            data = fh.read(step) + data
    lines = data.splitlines(keepends=True)
    if lines and not lines[-1].endswith(b"\n"):  # a line being written: following prints it whole
        end -= len(lines.pop())
    return (lines[-n:] if n > 0 else []), end


class _Follower:
    """New lines of one file, across truncation and rotation (a new file at the path)."""

    def __init__(self, path: Path, prefix: bytes) -> None:
        self.path, self.prefix = path, prefix
        self.fh: BinaryIO | None = None
        self.inode: int | None = None
        self.partial = b""

    def open(self, offset: int = 0) -> None:
        try:
            self.fh = open(self.path, "rb")
        except FileNotFoundError:
            self.fh = None
            return
        self.inode = os.fstat(self.fh.fileno()).st_ino
        self.fh.seek(offset)

    def poll(self) -> list[bytes]:
        if self.fh is None:
            self.open()
            if self.fh is None:
                return []
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if st is not None and (st.st_ino != self.inode or st.st_size < self.fh.tell()):
            self.fh.close()
            self.partial = b""
            self.open()  # rotated or truncated: what is there now is all new
            if self.fh is None:
                return []
        data = self.partial + self.fh.read()
        lines = data.splitlines(keepends=True)
        self.partial = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
        return [self.prefix + line for line in lines]


@app.command()
def logs(
    node: homes.NodeOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines (Ctrl-C stops).")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="How many of the last lines to show first.")] = 50,
) -> None:
    """Show the node's log; -f follows it."""
    nodes = homes.select(node, several=True)
    several = len(nodes) > 1
    out = sys.stdout.buffer
    followers = []
    for nh in nodes:
        prefix = f"[{nh.label}] ".encode() if several else b""
        f = _Follower(nh.log, prefix)
        if nh.log.exists():
            shown, end = tail(nh.log, lines)
            for line in shown:
                out.write(prefix + line)
            f.open(end)
        elif not follow:
            fail(f"no log yet at {nh.log}", "the node writes it when it starts: `infernet start` (or `infernet up`)")
        else:
            err.print(f"[dim]waiting for {nh.log}[/]", highlight=False)
        followers.append(f)
    out.flush()
    if not follow:
        return
    try:
        while True:
            for f in followers:
                for line in f.poll():
                    out.write(line)
            out.flush()
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
