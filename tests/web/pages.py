"""Opening the dashboard in a browser tab, as a user with a key would."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Tab:
    page: Any
    url: str
    errors: list[str] = field(default_factory=list)

    async def go(self, route: str) -> None:
        """Follow a link inside the page (a hash route), then wait for the page to draw."""
        await self.page.evaluate("(r) => { location.hash = r; }", f"#/{route}")
        await self.page.wait_for_function("(r) => location.hash === r && document.querySelector('main h1')", arg=f"#/{route}")

    async def drawn(self) -> None:
        """Until the page has loaded what it fetches (the live feed never goes idle)."""
        await self.page.wait_for_function("() => !document.querySelector('main').textContent.includes('Loading…')")
        await self.page.wait_for_timeout(300)

    def assert_clean(self) -> None:
        assert not self.errors, self.errors


async def open_tab(browser: Any, url: str, key: str | None, route: str = "overview", *, width: int = 1280) -> Tab:
    """A new browser context (its own storage) on the dashboard, signed in with `key` the way
    `infernet up` links it: the key in the URL fragment. Waits until the live feed is up."""
    context = await browser.new_context(viewport={"width": width, "height": 900})
    page = await context.new_page()
    tab = Tab(page, url)
    page.on("console", lambda m: tab.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: tab.errors.append(f"page error: {e}"))
    await page.goto(f"{url}/dashboard#key={key}" if key else f"{url}/dashboard")
    if key:
        await page.wait_for_function("() => document.querySelector('#conn').textContent === 'Live'")
        if route != "overview":
            await tab.go(route)
    return tab
