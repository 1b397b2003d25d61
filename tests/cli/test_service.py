"""`infernet service`: the unit and plist it writes, checked as text; install, status and
uninstall through a stand-in `systemctl` on PATH; a clear message where systemd is absent."""

from __future__ import annotations

import json
import os
import plistlib
import shlex
import sys
from pathlib import Path

import pytest

from infernet.cli.service import launchd_plist, systemd_unit
from tests.cli.upnet import cli

CFG = {"control_plane": "http://cp.example:8787", "backend": "ollama", "backend_url": "http://127.0.0.1:11434", "model": "qwen2.5:7b", "name": "gpu-box"}


def _home(tmp_path: Path, name: str = "home") -> Path:
    home = tmp_path / name
    home.mkdir()
    (home / "node.json").write_text(json.dumps(CFG))
    return home


def _args(home: Path) -> list[str]:
    return [sys.executable, "-m", "infernet", "start", "--foreground", "--control-plane", CFG["control_plane"], "--backend", "ollama", "--model", "qwen2.5:7b"]


def test_systemd_unit_runs_the_node_in_its_home(tmp_path):
    home = tmp_path / "a home with 100% spaces"
    unit = systemd_unit([*_args(home), "--name", "my $node"], home)
    lines = unit.splitlines()
    assert "[Service]" in lines and "[Install]" in lines and "WantedBy=default.target" in lines
    assert "Restart=on-failure" in lines
    assert f'Environment="INFERNET_HOME={str(home).replace("%", "%%")}"' in lines
    exec_line = next(line for line in lines if line.startswith("ExecStart="))
    # systemd's own quoting: % and $ doubled, quoted where there is a space.
    words = shlex.split(exec_line.removeprefix("ExecStart="))
    assert words[:5] == [sys.executable, "-m", "infernet", "start", "--foreground"]
    assert words[-2:] == ["--name", "my $$node"]
    assert f"StandardOutput=append:{str(home / 'node.log').replace('%', '%%')}" in lines


def test_launchd_plist_is_valid_and_says_the_same(tmp_path):
    home = tmp_path / "h&<ome>"
    doc = plistlib.loads(launchd_plist(_args(home), home).encode())
    assert doc["Label"] == "net.infernet.node"
    assert doc["ProgramArguments"] == _args(home)
    assert doc["EnvironmentVariables"]["INFERNET_HOME"] == str(home)
    assert doc["KeepAlive"] == {"SuccessfulExit": False} and doc["RunAtLoad"] is True
    assert doc["StandardOutPath"] == str(home / "node.log")


@pytest.fixture
def fake_systemctl(tmp_path):
    """A `systemctl` that records its arguments and answers like a user manager."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    script = bin_dir / "systemctl"
    script.write_text(f"""#!/bin/sh
echo "$@" >> {calls}
case "$2" in
  is-active) echo active ;;
  is-enabled) echo enabled ;;
esac
exit 0
""")
    script.chmod(0o755)
    return bin_dir, calls


def test_install_status_uninstall(tmp_path, fake_systemctl):
    bin_dir, calls = fake_systemctl
    home = _home(tmp_path)
    config_home = tmp_path / "xdg"
    path = f"{bin_dir}:{os.environ['PATH']}"
    r = cli(home, "service", "install", "--metrics-port", "9464", PATH=path, XDG_CONFIG_HOME=str(config_home))
    assert r.returncode == 0, r.stdout + r.stderr
    unit = config_home / "systemd" / "user" / "infernet-node.service"
    text = unit.read_text()
    assert f"--control-plane {CFG['control_plane']}" in text and "--backend-url http://127.0.0.1:11434" in text
    assert "--name gpu-box" in text and "--metrics-port 9464" in text and f"INFERNET_HOME={home}" in text
    assert calls.read_text().splitlines() == ["--user daemon-reload", "--user enable --now infernet-node.service"]
    r = cli(home, "service", "status", PATH=path, XDG_CONFIG_HOME=str(config_home))
    assert r.returncode == 0 and "active, enabled" in r.stdout, r.stdout
    r = cli(home, "service", "uninstall", PATH=path, XDG_CONFIG_HOME=str(config_home))
    assert r.returncode == 0, r.stderr
    assert not unit.exists()
    assert calls.read_text().splitlines()[-2:] == ["--user disable --now infernet-node.service", "--user daemon-reload"]
    r = cli(home, "service", "status", PATH=path, XDG_CONFIG_HOME=str(config_home))
    assert r.returncode == 1 and "not installed" in r.stdout


def test_without_systemd_a_clear_message(tmp_path):
    home = _home(tmp_path)
    empty = tmp_path / "nothing"
    empty.mkdir()
    r = cli(home, "service", "install", PATH=str(empty), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "systemd is not available here" in r.stderr and "infernet start" in r.stderr
    assert not (tmp_path / "xdg" / "systemd").exists()
    r = cli(home, "service", "install", "--print", PATH=str(empty))
    assert r.returncode == 0 and "ExecStart=" in r.stdout


def test_install_wants_a_configured_node(tmp_path, fake_systemctl):
    bin_dir, _ = fake_systemctl
    r = cli(tmp_path, "service", "install", PATH=f"{bin_dir}:{os.environ['PATH']}", XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    assert r.returncode == 1 and "infernet setup" in r.stderr
