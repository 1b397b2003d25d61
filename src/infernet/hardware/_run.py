"""Run a vendor tool with a short timeout and say plainly what happened."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
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


def run_tool(argv: list[str], timeout: float | None = None) -> ToolResult:
    """Run `argv` if its program is on PATH. Never raises for a missing or broken tool."""
    tool = argv[0]
    timeout = timeout if timeout is not None else TIMEOUT_S
    path = shutil.which(tool)
    if path is None:
        return ToolResult(tool, found=False)
    try:
        proc = subprocess.Popen(
            [path, *argv[1:]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            # A stable, untranslated output is what the parsers expect.
            env={**os.environ, "LC_ALL": "C", "LANG": "C"},
            start_new_session=True,  # so a timeout can end the tool and anything it started
        )
    except OSError as exc:  # not executable, wrong architecture...
        return ToolResult(tool, found=True, returncode=126, stderr=str(exc))
    try:
        out, errs = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return ToolResult(tool, found=True, stdout=out or "", timed_out=True)
    return ToolResult(tool, found=True, returncode=proc.returncode, stdout=out, stderr=errs)
