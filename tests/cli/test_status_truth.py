"""`infernet status` is right at once: after stop, after a kill, when the engine goes down,
when the control plane goes away; `up` warns at once about an engine it cannot use."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import httpx

from tests.backends.fakes import FakeOllama, serve_in_thread
from tests.cli.upnet import Up, cli, env, wait_until


def _start(home, up, engine_url, *extra):
    r = cli(home, "start", "-c", up.url, "-b", "ollama", "--backend-url", engine_url, "--name", home.name, *extra)
    assert r.returncode == 0, r.stderr
    wait_until(lambda: json.loads(cli(home, "status", "--json").stdout)["nodes"][0]["connected"], 30, "the node connected")


def test_stop_and_kill_show_at_once(up, engine, tmp_path):
    home = tmp_path / "n1"
    _start(home, up, engine.url, "--metrics-port", "0")
    r = cli(home, "status")
    assert r.returncode == 0 and "connected to" in r.stdout and "metrics" in r.stdout, r.stdout
    # The node's own /metrics counts the job it served.
    assert cli(home, "chat", "count me", "--model", "llama3.2:latest", INFERNET_URL=up.url, INFERNET_API_KEY=up.key).returncode == 0
    metrics_url = json.loads(cli(home, "status", "--json").stdout)["nodes"][0]["metrics_url"]
    text = httpx.get(metrics_url).text
    assert "infernet_node_connected 1.0" in text and "infernet_node_backend_up 1.0" in text

    assert cli(home, "stop").returncode == 0
    r = cli(home, "status")
    assert r.returncode == 1 and "not running" in r.stdout and "connected to" not in r.stdout, r.stdout
    assert "offline" in r.stdout  # and the control plane agrees

    _start(home, up, engine.url)
    os.kill(int((home / "node.pid").read_text()), signal.SIGKILL)
    time.sleep(0.2)
    r = cli(home, "status")
    assert r.returncode == 1 and "not running" in r.stdout, r.stdout
    r = cli(home, "doctor", timeout=60)
    assert r.returncode == 1 and "✗ daemon" in r.stdout


def test_engine_down_shows_within_seconds(up, tmp_path):
    home = tmp_path / "n2"
    own = FakeOllama()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(serve_in_thread(own.app))
        _start(home, up, url)
        view = json.loads(cli(home, "status", "--json").stdout)["nodes"][0]
        assert view["backend"]["ok"] and view["models"] == ["llama3.2:latest"]
    try:
        # The engine is gone; the node checks it every 5 s.
        def down() -> dict | None:
            v = json.loads(cli(home, "status", "--json").stdout)["nodes"][0]
            return v if not v["backend"]["ok"] else None

        v = wait_until(down, 15, "the engine shown down")
        assert v["connected"]  # the node itself stays connected
        r = cli(home, "status")
        assert r.returncode == 1 and "down" in r.stdout
    finally:
        cli(home, "stop")


def test_control_plane_gone_is_not_connected(engine, tmp_path):
    cp = Up.start(tmp_path / "cp", "--nodes", "0", wait_models=False)
    home = tmp_path / "n3"
    try:
        _start(home, cp, engine.url)
        # A hung control plane (a frozen host, a cut link): the node's socket stays open and
        # the node has not noticed yet, but status must not say "connected".
        cp.proc.send_signal(signal.SIGSTOP)
        r = cli(home, "status", "--timeout", "1")
        assert r.returncode == 1 and "does not answer" in r.stdout, r.stdout
        assert "connected to" not in r.stdout
        assert json.loads((home / "node-status.json").read_text())["connected"]  # the file still believes it
    finally:
        cp.proc.send_signal(signal.SIGCONT)
        cli(home, "stop")
        cp.stop()


def test_up_warns_at_once_when_its_engine_is_unreachable(tmp_path):
    home = tmp_path / "dead"
    proc = subprocess.Popen([sys.executable, "-m", "infernet", "up", "--port", "0", "--backend", "ollama", "--backend-url", "http://127.0.0.1:9"],
                            env=env(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out = []
        started = time.monotonic()

        def warned() -> bool:
            out.append(proc.stdout.readline())
            return "Models" in out[-1]

        wait_until(warned, 60, "up's panel")
        text = "".join(out)
        assert "warning: the ollama backend cannot serve" in text and "ollama serve" in text and "--backend-url" in text, text
        assert text.index("warning") < text.index("Models")  # before the panel, not after a wait
        assert "none" in out[-1]
        assert time.monotonic() - started < 60
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


def test_several_nodes_need_a_choice(tmp_path):
    from infernet.protocol import keys

    home = tmp_path / "up"
    nodes = []
    for i in range(2):
        nh = home / "nodes" / str(i)
        ident = keys.Identity.generate()
        keys.save(nh / "node_key.json", ident)
        nodes.append({"index": i, "home": str(nh), "name": f"local-{i}"})
        (nh / "node.json").write_text(json.dumps({"control_plane": "http://127.0.0.1:9", "backend": "ollama"}))
    (home / "nodes.json").write_text(json.dumps({"nodes": nodes}))
    r = cli(home, "keys", "show")
    assert r.returncode == 1 and "--node" in r.stderr and "0 (local-0), 1 (local-1)" in r.stderr
    r = cli(home, "keys", "show", "--node", "1")
    assert r.returncode == 0 and json.loads((home / "nodes" / "1" / "node_key.json").read_text())["npub"] in r.stdout
    r = cli(home, "keys", "show", "--node", "local-0")
    assert r.returncode == 0 and json.loads((home / "nodes" / "0" / "node_key.json").read_text())["npub"] in r.stdout
    r = cli(home, "status", "--timeout", "0.5")
    assert r.returncode == 1 and r.stdout.count("never started") == 2
    r = cli(home, "keys", "show", "--node", "7")
    assert r.returncode == 1 and "no node '7'" in r.stderr
    for i in range(2):
        (home / "nodes" / str(i) / "node.log").write_text(f"old {i}\nlast {i}\n")
    r = cli(home, "logs", "-n", "1")
    assert r.returncode == 0 and r.stdout.splitlines() == ["[local-0] last 0", "[local-1] last 1"]
    r = cli(home, "logs", "--node", "1", "-n", "5")
    assert r.stdout.splitlines() == ["old 1", "last 1"]
