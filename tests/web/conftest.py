"""Browser tests: real headless Chromium (Debian's `chromium`, which `.ci/run` installs)
driven by Playwright's Python package. Playwright's own browser download cannot reach its
host from here, so the browser is the system's, found on PATH.

Every test module runs in one event loop (`loop_scope="module"`) so the network and the
browser it starts serve all of its tests.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no chromium on PATH: install Debian's `chromium` (.ci/run does) to run the browser tests")
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    executable = chromium_path()
    async with async_playwright() as p:
        # launch() gives every run a fresh temporary profile
        b = await p.chromium.launch(executable_path=executable, args=ARGS)
        try:
            yield b
        finally:
            await b.close()


async def shoot(page: object, name: str) -> None:
    """A full-page screenshot for the README, from the test run."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]
