"""`infernet hardware` as an operator runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil

from tests.hardware.fakes import FakeTools, fixture

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _run(args, tmp_path, path=None):
    env = {**os.environ, "PYTHONPATH": SRC, "INFERNET_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    if path:
        env["PATH"] = path
    env.pop("INFERNET_CONTROL_PLANE", None)
    return subprocess.run([sys.executable, "-m", "infernet", *args], capture_output=True, text=True, env=env, timeout=60)


def test_json_is_one_object_on_stdout_and_says_cpu_here(tmp_path):
    r = _run(["hardware", "--json"], tmp_path)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)  # exactly one JSON document, nothing else on stdout
    assert r.stdout.count("\n") == 1
    assert data["tier"] == "cpu" and data["gpus"] == []
    assert data["ram_mb"] == psutil.virtual_memory().total // 2**20
    assert data["os"]["system"] == "Linux" and data["disk"]["free_gb"] > 0
    assert {c["status"] for c in data["checks"]} <= {"pass", "warn", "fail", "skip"}
    assert "nvidia-smi not found" in r.stderr  # diagnostics go to stderr


def test_failing_driver_still_exits_0_with_the_reason(tmp_path):
    tools = FakeTools(tmp_path / "bin")
    tools.add("nvidia-smi", [("*", fixture("nvidia/driver-not-loaded.txt"), 9)])
    r = _run(["hardware", "--json"], tmp_path, path=f"{tools.bin}:/usr/bin:/bin")
    assert r.returncode == 0
    data = json.loads(r.stdout)
    assert data["tier"] == "cpu"
    check = next(c for c in data["checks"] if c["name"] == "driver_nvidia")
    assert check["status"] == "fail" and "not loaded" in check["message"]
    assert "NVIDIA driver is not loaded" in r.stderr


def test_human_report_with_a_gpu(tmp_path):
    tools = FakeTools(tmp_path / "bin")
    tools.nvidia("rtx-4080.csv", cuda="12.8")
    r = _run(["hardware"], tmp_path, path=f"{tools.bin}:/usr/bin:/bin")
    assert r.returncode == 0, r.stderr
    assert "tier >=12gb" in r.stdout and "NVIDIA GeForce RTX 4080" in r.stdout and "16376" in r.stdout
    assert "CUDA 12.8" in r.stdout


def test_models_recommend_json(tmp_path):
    tools = FakeTools(tmp_path / "bin")
    tools.nvidia("rtx-4090.csv")
    r = _run(["models", "recommend", "--json"], tmp_path, path=f"{tools.bin}:/usr/bin:/bin")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["tier"] == ">=24gb" and data["backends"] == ["ollama", "vllm"]
    by_id = {m["model"]: m for m in data["models"]}
    assert by_id["qwen2.5-14b-instruct"]["tokens_per_s"] == [30, 80]
    assert by_id["llama-3.1-70b-instruct"]["quantization"] == "iq2_xs"
    assert by_id["llama-3.1-70b-instruct"]["max_context"] < 8192


def test_models_recommend_rejects_unknown_backend(tmp_path):
    r = _run(["models", "recommend", "--backend", "tgi"], tmp_path)
    assert r.returncode == 1 and "unknown backend" in r.stderr and "Traceback" not in r.stderr
