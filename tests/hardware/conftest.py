from __future__ import annotations

import pytest

from tests.hardware.fakes import FakeTools


@pytest.fixture
def tools(tmp_path, monkeypatch) -> FakeTools:
    """An empty PATH of fake vendor tools (plus /usr/bin:/bin for the shell they need)."""
    fake = FakeTools(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{fake.bin}:/usr/bin:/bin")
    monkeypatch.setenv("ROCM_PATH", str(tmp_path / "no-rocm"))
    monkeypatch.setenv("INFERNET_HOME", str(tmp_path / "home"))
    return fake
