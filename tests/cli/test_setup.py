"""`infernet setup` driven through a pseudo-terminal as a person would, and with `--yes`;
then `infernet doctor` on the node it made. A real control plane (`infernet up --nodes 0`)
and the real embedded backend; the daemon is a real background process."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

pytestmark = pytest.mark.slow
SRC = str(Path(__file__).resolve().parents[2] / "src")


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": SRC, "INFERNET_HOME": str(home), "COLUMNS": "200", "TERM": "dumb", **extra}
    for k in ("INFERNET_CONTROL_PLANE", "INFERNET_API_KEY", "INFERNET_URL"):
        env.pop(k, None)
    env.update(extra)
    return env


def _cli(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "infernet", *args], capture_output=True, text=True, env=_env(home, **extra), timeout=180)


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory):
    home = tmp_path_factory.mktemp("cp")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "infernet", "up", "--nodes", "0", "--port", str(port)], env=_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client = home / "client.json"
    deadline = time.monotonic() + 60
    while not client.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "control plane did not start"
        time.sleep(0.1)
    homes: list[Path] = []
    yield json.loads(client.read_text()), homes
    for h in homes:
        _cli(h, "stop")
    proc.terminate()
    proc.wait(timeout=15)


def test_setup_interactively_then_doctor_then_rerun(control_plane, tmp_path):
    cp, homes = control_plane
    home = tmp_path / "node"
    homes.append(home)
    child = pexpect.spawn(sys.executable, ["-m", "infernet", "setup"], env=_env(home), encoding="utf-8", timeout=60, dimensions=(50, 200))
    try:
        child.expect("1/7")
        child.expect("tier cpu")
        child.expect(r"Backend \[")
        child.sendline("embedded")
        child.expect(r"Model to serve")
        child.sendline("")  # take the default: the one model the embedded backend serves
        child.expect("fits")
        child.expect("created node key npub1")
        child.expect("Control plane URL")
        child.sendline(cp["url"])
        child.expect("latency")
        child.expect("Node name")
        child.sendline("pty-node")
        child.expect("wrote")
        child.expect("node started")
        child.expect("node online", timeout=90)
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    cfg_file = home / "node.json"
    assert stat.S_IMODE(cfg_file.stat().st_mode) == 0o600
    cfg = json.loads(cfg_file.read_text())
    assert cfg["backend"] == "embedded" and cfg["model"] == "smollm2-135m-instruct" and cfg["tier"] == "cpu"
    assert cfg["control_plane"] == cp["url"] and cfg["name"] == "pty-node"
    assert stat.S_IMODE((home / "node_key.json").stat().st_mode) == 0o600

    # The control plane lists the node, with the tier it detected.
    import httpx

    nodes = httpx.get(cp["url"] + "/api/v1/nodes", headers={"Authorization": f"Bearer {cp['api_key']}"}).json()["data"]
    mine = next(n for n in nodes if n["name"] == "pty-node")
    assert mine["tier"] == "cpu" and mine["status"] == "online" and mine["hardware"]["tier"] == "cpu"

    # doctor: every line passes, and the inference goes through the network to this node.
    r = _cli(home, "doctor", INFERNET_API_KEY=cp["api_key"])
    assert r.returncode == 0, r.stdout + r.stderr
    for part in ("config", "backend", "control plane", "daemon", "registered", "inference"):
        assert f"✓ {part}" in r.stdout
    assert "served by this node" in r.stdout

    # Re-running is safe: same identity, nothing changed, the daemon keeps running.
    pid = (home / "node.pid").read_text()
    key = (home / "node_key.json").read_text()
    r = _cli(home, "setup", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "kept node key" in r.stdout and "unchanged" in r.stdout and "already running" in r.stdout
    assert (home / "node.pid").read_text() == pid and (home / "node_key.json").read_text() == key

    # A stopped daemon is a doctor failure that says what to do.
    assert _cli(home, "stop").returncode == 0
    r = _cli(home, "doctor", INFERNET_API_KEY=cp["api_key"])
    assert r.returncode == 1
    assert "✗ daemon" in r.stdout and "infernet start" in r.stdout


def test_setup_yes_for_scripts(control_plane, tmp_path):
    cp, homes = control_plane
    home = tmp_path / "scripted"
    homes.append(home)
    r = _cli(home, "setup", "--yes", "--control-plane", cp["url"], "--backend", "embedded", "--name", "yes-node")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "node online" in r.stdout and "tier cpu" in r.stdout
    cfg = json.loads((home / "node.json").read_text())
    assert cfg["name"] == "yes-node" and cfg["model"] == "smollm2-135m-instruct"
    # Without an API key the doctor still proves the engine answers, and says how to go further.
    r = _cli(home, "doctor")
    assert r.returncode == 0, r.stdout
    assert "! inference" in r.stdout and "--api-key" in r.stdout


def test_setup_yes_fails_clearly_on_a_dead_control_plane(tmp_path):
    r = _cli(tmp_path / "n", "setup", "--yes", "--control-plane", "http://127.0.0.1:9", "--backend", "embedded")
    assert r.returncode == 1 and "cannot reach the control plane" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "n" / "node.pid").exists()


def test_doctor_without_setup(tmp_path):
    r = _cli(tmp_path / "empty", "doctor")
    assert r.returncode == 1 and "infernet setup" in r.stdout
