"""`infernet model ...` against a fake Ollama, through its API."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from infernet.backends.fit import check_fit
from infernet.cli import app
from tests.backends.fakes import (
    FakeOllama,
    FakeOpenAIEngine,
    OllamaModel,
    serve_in_thread,
)

runner = CliRunner()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERNET_HOME", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


def cli(*args: str):
    return runner.invoke(app, list(args))


def test_list_show_use(home):
    fake = FakeOllama()
    with serve_in_thread(fake.app) as url:
        r = cli("model", "list", "-b", "ollama", "--backend-url", url)
        assert r.exit_code == 0, r.output
        assert "llama3.2:latest" in r.output and "3.2B" in r.output and "Q4_K_M" in r.output and "8192" in r.output
        r = cli("model", "show", "llama3.2", "-b", "ollama", "--backend-url", url)
        assert r.exit_code == 0 and "131072" in r.output and "completion, tools" in r.output
        r = cli("model", "use", "llama3.2", "-b", "ollama", "--backend-url", url)
        assert r.exit_code == 0, r.output
        assert json.loads((home / "node.json").read_text())["model"] == "llama3.2:latest"
        r = cli("model", "use", "mistral", "-b", "ollama", "--backend-url", url)
        assert r.exit_code == 1 and "no model 'mistral'" in r.output


def test_pull_shows_progress_and_rm_removes(home):
    fake = FakeOllama(registry={"qwen2.5:0.5b": OllamaModel(size=397821319, family="qwen2")})
    with serve_in_thread(fake.app) as url:
        r = cli("model", "pull", "qwen2.5:0.5b", "-b", "ollama", "--backend-url", url)
        assert r.exit_code == 0, r.output
        assert "pulled qwen2.5:0.5b" in r.output and "397.8" in r.output
        assert "qwen2.5:0.5b" in fake.models
        r = cli("model", "rm", "qwen2.5:0.5b", "-b", "ollama", "--backend-url", url)
        assert r.exit_code == 0 and "qwen2.5:0.5b" not in fake.models
        r = cli("model", "rm", "qwen2.5:0.5b", "-b", "ollama", "--backend-url", url)
        assert r.exit_code == 1 and "not available" in r.output and "infernet model list" in r.output
        r = cli("model", "pull", "nope:1b", "-b", "ollama", "--backend-url", url)
        assert r.exit_code == 1 and "file does not exist" in r.output


def test_pull_refuses_what_does_not_fit_unless_forced(home):
    huge = 10 * 1024**4  # 10 TB of weights fits no machine this runs on
    assert not check_fit(huge).ok
    fake = FakeOllama(registry={"huge:405b": OllamaModel(size=huge)}, pull_chunks=20, delay_s=0.01)
    with serve_in_thread(fake.app) as url:
        r = cli("model", "pull", "huge:405b", "-b", "ollama", "--backend-url", url)
        assert r.exit_code == 1 and "does not fit" in r.output and "--force" in r.output
        assert "huge:405b" not in fake.models
        deadline = time.monotonic() + 5
        while not fake.aborted.is_set():  # the download was stopped, not left running
            assert time.monotonic() < deadline
            time.sleep(0.02)
        r = cli("model", "pull", "huge:405b", "--force", "-b", "ollama", "--backend-url", url)
        assert r.exit_code == 0, r.output
        assert "huge:405b" in fake.models


def test_engines_without_model_management_say_so(home):
    fake = FakeOpenAIEngine(flavour="vllm", model="m/x")
    with serve_in_thread(fake.app) as url:
        r = cli("model", "pull", "qwen", "-b", "vllm", "--backend-url", url)
        assert r.exit_code == 1 and "cannot pull" in r.output and "restart the engine" in r.output
        r = cli("model", "list", "-b", "vllm", "--backend-url", url)
        assert r.exit_code == 0 and "m/x" in r.output


def test_an_unreachable_engine_is_a_clear_error(home):
    r = cli("model", "list", "-b", "ollama", "--backend-url", "http://127.0.0.1:9")
    assert r.exit_code == 1 and "unreachable" in r.output and "is the ollama engine running" in r.output


def test_fit_rule():
    gpu = {"gpus": [{"vram_mb": 24576}], "ram_mb": 65536}
    assert check_fit(int(24576 * 1024**2 * 0.85) - 1, gpu).ok
    assert not check_fit(int(24576 * 1024**2 * 0.86), gpu).ok
    cpu = {"gpus": [], "ram_mb": 16384}
    assert check_fit(int(16384 * 1024**2 * 0.6), cpu).ok and not check_fit(16384 * 1024**2, cpu).ok
    assert check_fit(1, cpu).where == "CPU" and check_fit(1, gpu).where == "GPU"
