"""`infernet top`: a live view through a pty, one frame, and a JSON snapshot."""

from __future__ import annotations

import json
import sys

import pexpect

from tests.cli.upnet import cli, env


def test_live_view_of_the_node_quits_on_q(up):
    child = pexpect.spawn(sys.executable, ["-m", "infernet", "top", "--interval", "0.3"], env=env(up.home, TERM="xterm"), encoding="utf-8", timeout=30, dimensions=(40, 120))
    try:
        child.expect("local-0")
        child.expect("connected")
        child.expect("machine")
        child.expect("q quits")  # a second frame came
        child.send("q")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_network_view_for_the_admin(up):
    r = cli(up.home, "top", "--network", "--once", INFERNET_API_KEY=up.key)
    assert r.returncode == 0, r.stderr
    assert "network " + up.url in r.stdout and "local-0" in r.stdout and "online" in r.stdout
    snap = json.loads(cli(up.home, "top", "--network", "--json", INFERNET_API_KEY=up.key).stdout)
    assert snap["totals"]["nodes_online"] == 1 and len(snap["nodes"][0]["id"]) == 64


def test_network_view_refuses_a_client_key(up):
    created = cli(up.home, "keys", "api", "create", "--name", "viewer", INFERNET_API_KEY=up.key).stdout.split()
    r = cli(up.home, "top", "--network", "--once", INFERNET_API_KEY=created[1])
    assert r.returncode == 1 and "admin key" in r.stderr


def test_snapshot_of_the_node(up):
    r = cli(up.home, "top", "--json")
    assert r.returncode == 0, r.stderr
    snap = json.loads(r.stdout)
    (node,) = snap["nodes"]
    assert node["node"] == "local-0" and node["connected"] and "tokens_per_s" in node
    assert {"cpu_pct", "load", "mem_pct", "gpus"} <= set(snap["machine"])


def test_gpu_use_reads_nvidia_smi(tmp_path, monkeypatch):
    from infernet.cli.top import gpu_use
    from tests.hardware.fakes import FakeTools

    tools = FakeTools(tmp_path / "bin")
    # What `nvidia-smi --query-gpu=index,name,utilization.gpu,memory.used,memory.total
    # --format=csv,noheader,nounits` prints on a two-card machine (one card not reporting).
    tools.add("nvidia-smi", [("*utilization.gpu*", "0, NVIDIA H200, 87, 120311, 143771\n1, NVIDIA H200, [N/A], 0, 143771\n", 0)])
    monkeypatch.setenv("PATH", f"{tools.bin}:/usr/bin:/bin")
    assert gpu_use() == [{"index": 0, "name": "NVIDIA H200", "util_pct": 87.0, "mem_used_mb": 120311.0, "mem_total_mb": 143771.0}]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert gpu_use() == []
