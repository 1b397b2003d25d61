"""The node commands run in `infernet up`'s home speak of `up`'s node: status, doctor,
keys show, payments, payout, logs; and `models` lists what the network serves."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time

from tests.cli.upnet import PY, cli, env, wait_until


def _node_key(up) -> dict:
    return json.loads((up.home / "nodes" / "0" / "node_key.json").read_text())


def test_nodes_json_lists_ups_node(up):
    listed = json.loads((up.home / "nodes.json").read_text())
    assert [n["name"] for n in listed["nodes"]] == ["local-0"]
    assert listed["nodes"][0]["home"] == str(up.home / "nodes" / "0")


def test_keys_show_is_the_serving_nodes_identity(up):
    r = cli(up.home, "keys", "show")
    assert r.returncode == 0, r.stderr
    key = _node_key(up)
    assert key["npub"] in r.stdout and key["pubkey"] in r.stdout and "local-0" in r.stdout
    assert not (up.home / "node_key.json").exists(), "keys show made a new identity in up's home"
    assert key["pubkey"] in {n["id"] for n in up.nodes() if n["status"] == "online"}


def test_status_tells_connected_engine_models_jobs_and_earnings(up):
    r = cli(up.home, "chat", "earn something", "--max-tokens", "5", INFERNET_API_KEY=up.key)
    assert r.returncode == 0 and "one two three" in r.stdout, r.stderr
    r = cli(up.home, "status")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "local-0" in out and _node_key(up)["npub"] in out
    assert "connected to " + up.url in out
    assert "ollama" in out and "up (" in out and "llama3.2:latest" in out
    assert "online" in out and "receipts" in out
    data = json.loads(cli(up.home, "status", "--json").stdout)
    (view,) = data["nodes"]
    assert view["connected"] and view["backend"]["ok"] and view["models"] == ["llama3.2:latest"]
    assert view["jobs"]["done"] >= 1 and view["earnings"]["receipts"] >= 1 and view["id"] == _node_key(up)["pubkey"]


def test_payments_shows_the_nodes_receipts(up):
    r = cli(up.home, "chat", "pay me", "--max-tokens", "3", INFERNET_API_KEY=up.key)
    assert r.returncode == 0, r.stderr
    r = cli(up.home, "payments", "--json")
    assert r.returncode == 0, r.stderr
    p = json.loads(r.stdout)
    assert p["receipts"] >= 1 and p["node_pubkey"] == _node_key(up)["pubkey"]
    job_id = p["data"][0]["receipt"]["job_id"]
    r = cli(up.home, "payments", COLUMNS="60")
    assert r.returncode == 0 and job_id in r.stdout, r.stdout  # whole, even 60 columns wide


def test_doctor_checks_ups_node(up):
    r = cli(up.home, "doctor", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    for part in ("config", "backend", "control plane", "daemon", "registered", "inference"):
        assert f"✓ {part}" in r.stdout, r.stdout
    assert "served by this node" in r.stdout
    assert "infernet setup" not in r.stdout


def test_logs_shows_and_follows_the_nodes_log(up):
    r = cli(up.home, "logs", "--lines", "3")
    assert r.returncode == 0, r.stderr
    assert 1 <= len(r.stdout.splitlines()) <= 3
    follow = subprocess.Popen([PY, "-m", "infernet", "logs", "-f", "-n", "0"], env=env(up.home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # it is following now
        log = up.home / "nodes" / "0" / "node.log"
        with open(log, "a") as fh:
            fh.write("a line written while following\n")
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in follow.stdout], daemon=True).start()
        deadline = time.monotonic() + 15
        while True:  # a reader thread, so a line that never comes fails the test, not hangs it
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if "a line written while following" in line:
                break
    finally:
        follow.terminate()
        follow.wait(10)


def test_models_lists_what_the_network_serves(up):
    r = cli(up.home, "models")
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if "llama3.2:latest" in line)
    for cell in ("chat", "1", "8192", "0.010000", "0.040000"):
        assert cell in row, row
    (m,) = json.loads(cli(up.home, "models", "--json").stdout)["models"]
    assert m == {"model": "llama3.2:latest", "kind": "chat", "nodes": 1, "context_length": 8192, "input_usdc_per_m": "0.010000", "output_usdc_per_m": "0.040000"}


def test_nodes_list_has_live_last_seen(up):
    def fresh() -> bool:
        (n,) = [n for n in up.nodes() if n["status"] == "online"]
        return time.time() - n["last_seen"] < 12  # a heartbeat every 10 s
    wait_until(fresh, 15, "a live last_seen")


def test_follower_survives_truncation_and_rotation(tmp_path):
    from infernet.cli.nodelogs import _Follower, tail

    log = tmp_path / "node.log"
    log.write_bytes(b"one\ntwo\nthr")  # the last line is still being written
    shown, end = tail(log, 5)
    assert shown == [b"one\n", b"two\n"]
    f = _Follower(log, b"")
    f.open(end)
    with open(log, "ab") as fh:
        fh.write(b"ee\n")
    assert f.poll() == [b"three\n"]
    log.write_bytes(b"new\n")  # truncated and rewritten
    assert f.poll() == [b"new\n"]
    log.rename(tmp_path / "node.log.1")
    log.write_bytes(b"rotated\n")  # a new file at the path
    assert f.poll() == [b"rotated\n"]
