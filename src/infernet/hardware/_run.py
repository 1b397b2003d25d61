"""Run a vendor tool with a short timeout and say plainly what happened."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

TIMEOUT_S = 4.0


@dataclass(frozen=True, slots=True)
class ToolResult:
    tool: str
    found: bool
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.found and not self.timed_out and self.returncode == 0

    def first_line(self) -> str:
        """The most telling line of output, for a one-line reason."""
        for text in (self.stderr, self.stdout):
            for line in text.splitlines():
                if line.strip():
                    return line.strip()[:200]
        return f"exit code {self.returncode}"


def run_tool(argv: list[str], timeout: float = TIMEOUT_S) -> ToolResult:
    """Run `argv` if its program is on PATH. Never raises for a missing or broken tool."""
    tool = argv[0]
    path = shutil.which(tool)
    if path is None:
        return ToolResult(tool, found=False)
    try:
        proc = subprocess.run(
            [path, *argv[1:]],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            # A stable, untranslated output is what the parsers expect.
            env={**os.environ, "LC_ALL": "C", "LANG": "C"},
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return ToolResult(tool, found=True, stdout=out, timed_out=True)
    except OSError as exc:  # not executable, wrong architecture...
        return ToolResult(tool, found=True, returncode=126, stderr=str(exc))
    return ToolResult(tool, found=True, returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)
