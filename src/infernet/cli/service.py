"""`infernet service install | uninstall | status`: run the node as a user service, so it
starts at boot (or login) and comes back after a crash: a systemd user unit on Linux, a
launchd agent on macOS.

The unit runs `infernet start --foreground` with the node's configuration (node.json, as
`infernet setup` wrote it) spelled out on its command line, so what runs is readable in
the unit itself; run `service install` again after changing the configuration. The node's
output goes to INFERNET_HOME/node.log, where `infernet logs` reads it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Optional
from xml.sax.saxutils import escape

import typer

from infernet import config
from infernet.cli.app import app, console, err, fail

UNIT = "infernet-node.service"
LABEL = "net.infernet.node"
service_app = typer.Typer(help="Run the node as a service: a systemd user unit (Linux) or a launchd agent (macOS).", no_args_is_help=True)
app.add_typer(service_app, name="service")


def command_line(home: Path, cfg: dict[str, Any], metrics_port: int | None = None) -> list[str]:
    """The node's start command, from its saved configuration."""
    if not cfg.get("control_plane") or not cfg.get("backend"):
        fail(f"no node configuration in {home / 'node.json'}", "run `infernet setup` first (or `infernet start` once)")
    args = [sys.executable, "-m", "infernet", "start", "--foreground", "--control-plane", cfg["control_plane"], "--backend", cfg["backend"]]
    for flag, key in (("--backend-url", "backend_url"), ("--model", "model"), ("--name", "name")):
        if cfg.get(key):
            args += [flag, str(cfg[key])]
    if metrics_port is not None:
        args += ["--metrics-port", str(metrics_port)]
    return args


def _systemd_word(arg: str) -> str:
    """One argument as systemd reads ExecStart: quoted when needed; % and $ doubled
    (systemd would expand them as specifiers and variables)."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and not any(c in arg for c in " \t\"'\\;"):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _quoted(assignment: str) -> str:
    """An Environment= assignment: specifiers (%) doubled, quoted when it has a space."""
    assignment = assignment.replace("%", "%%")
    return f'"{assignment}"' if any(c.isspace() for c in assignment) else assignment


def systemd_unit(args: list[str], home: Path) -> str:
    log = home / "node.log"
    return "\n".join([
        "# Written by `infernet service install`; `infernet service uninstall` removes it.",
        "[Unit]",
        f"Description=infernet node ({home})",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        "Environment=" + _quoted(f"INFERNET_HOME={home}"),
        "Environment=PYTHONUNBUFFERED=1",
        "ExecStart=" + " ".join(_systemd_word(a) for a in args),
        # A crash or a lost engine brings the node back; a clean stop (SIGTERM) does not.
        "Restart=on-failure",
        "RestartSec=5",
        "TimeoutStopSec=20",
        # `infernet logs` reads the node's log in its home, as for a node from `infernet start`.
        f"StandardOutput=append:{str(log).replace('%', '%%')}",
        "StandardError=inherit",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ])


def launchd_plist(args: list[str], home: Path) -> str:
    log = escape(str(home / "node.log"))
    argv = "\n".join(f"    <string>{escape(a)}</string>" for a in args)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Written by `infernet service install`; `infernet service uninstall` removes it. -->
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>{LABEL}</string>
  <key>ProgramArguments</key>
  <array>
{argv}
  </array>
  <key>EnvironmentVariables</key>
  <dict>
    <key>INFERNET_HOME</key>
    <string>{escape(str(home))}</string>
    <key>PYTHONUNBUFFERED</key>
    <string>1</string>
  </dict>
  <key>RunAtLoad</key>
  <true/>
  <key>KeepAlive</key>
  <dict>
    <key>SuccessfulExit</key>
    <false/>
  </dict>
  <key>StandardOutPath</key>
  <string>{log}</string>
  <key>StandardErrorPath</key>
  <string>{log}</string>
</dict>
</plist>
"""


def _kind() -> str:
    if sys.platform == "darwin":
        return "launchd"
    if sys.platform.startswith("linux"):
        return "systemd"
    fail(f"`infernet service` supports Linux (systemd) and macOS (launchd), not {sys.platform}", "run the node with `infernet start`")


def unit_path(kind: str) -> Path:
    if kind == "launchd":
        return Path.home() / "Library" / "LaunchAgents" / f"{LABEL}.plist"
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "systemd" / "user" / UNIT


def _manager(kind: str) -> str:
    """The service manager's program, or a clear failure where there is none."""
    tool = "launchctl" if kind == "launchd" else "systemctl"
    path = shutil.which(tool)
    if path is None:
        if kind == "systemd":
            fail("systemd is not available here (no `systemctl` on PATH), so a user service cannot be installed",
                 "run the node with `infernet start` (it stays up in the background), or `infernet service install --print` for the unit to adapt")
        fail("launchctl is not on PATH", "run the node with `infernet start`")
    return path


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        why = (r.stderr or r.stdout).strip() or f"exit code {r.returncode}"
        hint = "a user service needs a user session: log in over SSH as this user (not `su`), or as root run `loginctl enable-linger USER`" if "bus" in why.lower() else None
        fail(f"`{' '.join(argv[1:])}` failed: {why}", hint)
    return r


def _systemctl(tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run([tool, "--user", *args], check=check)


@service_app.command("install")
def install(
    print_only: Annotated[bool, typer.Option("--print", help="Print the unit (or plist) and change nothing.")] = False,
    no_start: Annotated[bool, typer.Option("--no-start", help="Install and enable, but do not start it now.")] = False,
    metrics_port: Annotated[Optional[int], typer.Option("--metrics-port", min=0, max=65535, help="The node serves Prometheus /metrics on this port.")] = None,
) -> None:
    """Install the node as a user service that starts at boot and restarts after a crash."""
    home = config.home()
    args = command_line(home, config.read_json(home / "node.json"), metrics_port)
    kind = _kind()
    text = launchd_plist(args, home) if kind == "launchd" else systemd_unit(args, home)
    if print_only:
        sys.stdout.write(text)
        return
    tool = _manager(kind)
    from infernet.cli.node import _alive

    if _alive(home / "node.pid"):
        fail(f"a node started by `infernet start` runs from {home}; two processes must not serve one identity", "stop it first: `infernet stop`")
    path = unit_path(kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if kind == "systemd":
        _systemctl(tool, "daemon-reload")
        _systemctl(tool, "enable", UNIT) if no_start else _systemctl(tool, "enable", "--now", UNIT)
    else:
        _run([tool, "bootout", f"gui/{os.getuid()}", str(path)], check=False)  # an older copy
        if not no_start:
            _run([tool, "bootstrap", f"gui/{os.getuid()}", str(path)])
    console.print(f"installed {path}", highlight=False)
    console.print("enabled; it starts at the next login or boot" if no_start else "started; `infernet status` shows the node, `infernet logs -f` its log", highlight=False)
    user = os.environ.get("USER", "")
    if kind == "systemd" and user and not Path(f"/var/lib/systemd/linger/{user}").exists():
        err.print(f"[yellow]![/] user services stop when {user} logs out: to keep the node up on a server, run `sudo loginctl enable-linger {user}`", highlight=False)


@service_app.command("uninstall")
def uninstall() -> None:
    """Stop the service and remove its unit."""
    kind = _kind()
    path = unit_path(kind)
    if not path.exists():
        fail(f"no service is installed ({path} does not exist)")
    tool = _manager(kind)
    if kind == "systemd":
        _systemctl(tool, "disable", "--now", UNIT, check=False)
    else:
        _run([tool, "bootout", f"gui/{os.getuid()}", str(path)], check=False)
    path.unlink()
    if kind == "systemd":
        _systemctl(tool, "daemon-reload")
    console.print(f"stopped and removed {path}", highlight=False)


@service_app.command("status")
def service_status() -> None:
    """Is the service installed, enabled and running?"""
    kind = _kind()
    path = unit_path(kind)
    if not path.exists():
        console.print(f"not installed ({path}); `infernet service install` installs it", highlight=False)
        raise typer.Exit(1)
    tool = _manager(kind)
    if kind == "systemd":
        active = _systemctl(tool, "is-active", UNIT, check=False).stdout.strip() or "unknown"
        enabled = _systemctl(tool, "is-enabled", UNIT, check=False).stdout.strip() or "unknown"
    else:
        r = _run([tool, "print", f"gui/{os.getuid()}/{LABEL}"], check=False)
        active = "active" if r.returncode == 0 and "state = running" in r.stdout else "inactive"
        enabled = "loaded" if r.returncode == 0 else "not loaded"
    console.print(f"installed {path}\n{kind}: {active}, {enabled}", highlight=False)
    console.print("[dim]`infernet status` shows the node itself[/]")
    raise typer.Exit(0 if active == "active" else 1)
