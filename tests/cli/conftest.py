from __future__ import annotations

import pytest

from tests.backends.fakes import FakeOllama, serve_in_thread
from tests.cli.upnet import Up


@pytest.fixture(scope="module")
def engine():
    """A fake Ollama with one model; `.fake` is the engine, `.url` its address."""
    fake = FakeOllama(reply="one two three four five")
    with serve_in_thread(fake.app) as url:
        fake.url = url  # type: ignore[attr-defined]
        yield fake


@pytest.fixture(scope="module")
def up(engine, tmp_path_factory):
    """`infernet up` with one node on the fake Ollama, shared by a module's tests."""
    net = Up.start(tmp_path_factory.mktemp("up") / "home", "--backend", "ollama", "--backend-url", engine.url)
    try:
        yield net
    finally:
        net.stop()
