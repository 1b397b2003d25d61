"""The dashboard in real Chromium against a running network on fake engines: what an admin
and a client each see, the filters, keys and money, signing in, live updates, and the
accessibility rules (labels, contrast, keyboard)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import expect

from infernet.backends.fake import FakeBackend
from infernet.control import Settings
from infernet.control.health.verify import VerifyPolicy
from tests.harness import ADMIN_KEY, GPU_BOX, Network
from tests.web.pages import open_tab

pytestmark = pytest.mark.asyncio(loop_scope="module")



class World:
    def __init__(self, net: Network) -> None:
        self.net = net
        self.jobs: dict[str, list[str]] = {"alice": [], "bob": []}

    async def chat(self, who: str, model: str = "fake-model") -> str:
        async with self.net.client(self.keys[who]) as c:
            r = await c.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": f"hello from {who}"}], "stream": True})
            job = next(line for line in r.text.splitlines() if line.startswith("data: {"))
            job_id = job.split('"id":"', 1)[1].split('"', 1)[0]
        self.jobs[who].append(job_id)
        return job_id


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory):
    async with Network.start(tmp=tmp_path_factory.mktemp("web"), settings=Settings(heartbeat_s=0.5, dashboard_tick_s=0.3, verify=VerifyPolicy(canary_rate=0))) as net:
        # no canaries: they are jobs too (the control plane's own), and would come at random
        w = World(net)
        w.cpu = await net.add_node(FakeBackend(("fake-model",), reply="plain answer " * 6, delay_s=0.002), name="cpu-box")
        w.gpu = await net.add_node(FakeBackend(("fake-model",), reply="fast answer " * 8, delay_s=0.001), name="gpu-box", tier=">=24gb", hardware=GPU_BOX)
        await net.add_node(FakeBackend(("broken-model",), reply="one two three", fail="engine fell over", fail_after=1), name="flaky-box")
        w.keys = {"alice": await net.funded_key("alice"), "bob": await net.funded_key("bob")}
        for who in ("alice", "bob", "alice", "bob"):
            await w.chat(who)
        w.failed = await w.chat("alice", "broken-model")
        await net.cp.driver.settled()
        yield w


async def api(world: World, path: str, key: str = ADMIN_KEY) -> Any:
    async with world.net.client(key) as c:
        r = await c.get(path)
        assert r.status_code == 200, r.text
        return r.json()


async def ids_in(page: Any, selector: str = "#jobs-table tbody a[href^='#/jobs/']") -> set[str]:
    hrefs = await page.eval_on_selector_all(selector, "els => els.map(e => decodeURIComponent(e.getAttribute('href').slice(7)))")
    return set(hrefs)


async def test_the_overview_shows_the_nodes_and_charts_and_moves_live(browser, world):
    tab = await open_tab(browser, world.net.url, ADMIN_KEY)
    page = tab.page
    assert "key=" not in page.url  # the key left the address bar
    await expect(page.locator(".stat", has_text="Nodes online")).to_contain_text("3")
    await expect(page.locator(".stat", has_text="By tier")).to_contain_text("2 cpu, 1 >=24gb")
    await expect(page.locator(".stat", has_text="By vendor")).to_contain_text("1 nvidia")
    charts = page.locator("figure.chart-card svg[role=img]")
    assert await charts.count() == 7
    labels = await charts.evaluate_all("els => els.map(e => e.getAttribute('aria-label'))")
    assert all(": " in label for label in labels)
    jobs_chart = page.locator("#chart-jobs svg")
    await expect(jobs_chart).to_have_attribute("aria-label", "Jobs per minute: now 5, peak 5")
    # a job ending elsewhere shows up without a reload
    await world.chat("bob")
    await expect(jobs_chart).to_have_attribute("aria-label", "Jobs per minute: now 6, peak 6", timeout=10_000)
    await expect(page.locator("#chart-failures svg")).to_have_attribute("aria-label", re.compile(r"^Failure rate: now 16.7 %, peak (16.7|20) %$"))
    tab.assert_clean()
    await page.context.close()


async def test_a_client_key_cannot_see_another_clients_jobs(browser, world):
    tab = await open_tab(browser, world.net.url, world.keys["alice"], "jobs")
    page = tab.page
    await expect(page.locator("#who")).to_contain_text("client, your jobs")
    await expect(page.locator("#jobs-table tbody tr")).to_have_count(len(world.jobs["alice"]))
    assert await ids_in(page) == set(world.jobs["alice"])
    assert await page.get_by_label("Jobs of").count() == 0  # no network view to switch to
    await page.get_by_label("Status").select_option("completed")
    await page.get_by_role("button", name="Apply").click()
    await expect(page.locator("#jobs-table tbody tr")).to_have_count(len(world.jobs["alice"]) - 1)
    # bob's job, opened by its address, is not there for alice
    await tab.go(f"jobs/{world.jobs['bob'][0]}")
    await expect(page.locator("main")).to_contain_text(f"No job `{world.jobs['bob'][0]}`")
    # the overview's figures and the node page's jobs are hers alone
    await tab.go("overview")
    await expect(page.locator("main")).to_contain_text("Your jobs over the last hour")
    await tab.go(f"nodes/{world.gpu.node.identity.pubkey}")
    await expect(page.locator("main")).to_contain_text("Your recent jobs on this node")
    assert await ids_in(page, "main table tbody a[href^='#/jobs/']") <= set(world.jobs["alice"])
    assert "Earned" not in await page.locator("main").inner_text()
    tab.errors[:] = [e for e in tab.errors if "404" not in e]  # the refused job is a 404, by design
    tab.assert_clean()
    await page.context.close()


async def test_an_admin_sees_the_networks_jobs_with_filters_and_error_text(browser, world):
    tab = await open_tab(browser, world.net.url, ADMIN_KEY, "jobs")
    page = tab.page
    everyone = set(world.jobs["alice"]) | set(world.jobs["bob"])
    await expect(page.locator("#jobs-table tbody tr")).to_have_count(len(everyone))
    assert await ids_in(page) == everyone
    await page.get_by_label("Status").select_option("failed")
    await page.get_by_role("button", name="Apply").click()
    await expect(page.locator("#jobs-table tbody tr")).to_have_count(1)
    await expect(page.locator("#jobs-table")).to_contain_text("engine fell over")
    await page.get_by_role("button", name="Clear").click()
    await page.get_by_label("Node id").fill(world.gpu.node.identity.pubkey)
    await page.get_by_role("button", name="Apply").click()
    on_gpu = {j["id"] for j in (await api(world, f"/api/v1/jobs?all=1&node={world.gpu.node.identity.pubkey}"))["data"]}
    await expect(page.locator("#jobs-table tbody tr")).to_have_count(len(on_gpu))
    assert await ids_in(page) == on_gpu
    await page.get_by_label("Jobs of").select_option("mine")
    await page.get_by_role("button", name="Apply").click()
    await expect(page.locator("#jobs-table")).to_contain_text("No job matches.")
    # the failed job's page carries its error and says why there is no receipt
    await tab.go(f"jobs/{world.failed}")
    await expect(page.locator("#job-error")).to_contain_text("engine fell over")
    await expect(page.locator("#receipt")).to_contain_text("this job has no receipt")
    tab.assert_clean()
    await page.context.close()


async def test_nodes_show_gpus_vram_speed_against_the_tier_and_a_node_page_its_jobs(browser, world):
    tab = await open_tab(browser, world.net.url, ADMIN_KEY, "nodes")
    page = tab.page
    row = page.locator("#nodes-table tbody tr", has_text="gpu-box")
    await expect(row).to_contain_text("NVIDIA GeForce RTX 4090 (24 GB)")
    await expect(row).to_contain_text(">=24gb")
    await expect(row).to_contain_text("expected 15–80")
    await expect(row.locator(".badge-above, .badge-within, .badge-below")).to_have_count(1)
    await expect(page.locator("#nodes-table thead")).to_contain_text("Earned (USDC)")
    await row.get_by_role("link", name="gpu-box").click()
    await expect(page.locator("h1")).to_have_text("Node gpu-box")
    await expect(page.locator("main")).to_contain_text("Earned")
    node = await api(world, f"/api/v1/nodes/{world.gpu.node.identity.pubkey}")
    assert await ids_in(page, "main table tbody a[href^='#/jobs/']") == {j["id"] for j in node["recent_jobs"]}
    await expect(page.locator("main")).to_contain_text(f"{node['earnings']['earned_usdc']} USDC ({node['earnings']['receipts']} receipts)")
    tab.assert_clean()
    await page.context.close()


async def test_keys_an_admin_creates_credits_limits_and_revokes_and_a_client_sees_its_money(browser, world):
    tab = await open_tab(browser, world.net.url, ADMIN_KEY, "keys")
    page = tab.page
    await page.get_by_label("Name").fill("carol")
    await page.get_by_label("Spend limit").first.fill("3.00")
    await page.get_by_role("button", name="Create key").click()
    new_key = await page.locator("#new-key").inner_text()
    assert new_key.startswith("inf-")
    await page.get_by_role("button", name="Manage carol").click()
    await expect(page.locator("#manage-h")).to_be_focused()
    await page.get_by_label("Credit (USDC)").fill("2.50")
    await page.get_by_role("button", name="Credit", exact=True).click()
    await expect(page.locator("#manage-status")).to_have_text("Credited 2.50 USDC.")
    await expect(page.locator("#keys-table tbody tr", has_text="carol")).to_contain_text("2.500000")
    await page.locator("#manage-h ~ form").get_by_label("Rate limit").fill("30")
    await page.get_by_role("button", name="Save limits").click()
    await expect(page.locator("#keys-table tbody tr", has_text="carol")).to_contain_text("30 /min")
    carol = next(k for k in (await api(world, "/api/v1/keys"))["data"] if k["name"] == "carol")
    assert (carol["rate_limit"], carol["spend_limit"], carol["balance"]) == (30, "3.000000", "2.500000")
    await page.get_by_role("button", name="Revoke…").click()
    await page.get_by_role("button", name="Confirm: revoke carol").click()
    await expect(page.locator("#keys-table tbody tr", has_text="carol")).to_contain_text("revoked")
    async with httpx.AsyncClient(base_url=world.net.url, headers={"Authorization": f"Bearer {new_key}"}) as c:
        world.net.cp.store.keys.forget()
        assert (await c.get("/api/v1/balance")).status_code == 401
    tab.assert_clean()
    await page.context.close()

    client = await open_tab(browser, world.net.url, world.keys["bob"], "keys")
    page = client.page
    history = await api(world, "/api/v1/balance/history", world.keys["bob"])
    await expect(page.locator(".stat", has_text="Available")).to_contain_text(history["available_usdc"])
    await expect(page.locator(".stat", has_text="Spent, all time")).to_contain_text(history["spent_usdc"])
    assert await page.locator("svg rect.bar").count() == len(history["spend"])
    await expect(page.locator("main")).to_contain_text("Open holds (0)")
    assert await page.get_by_role("button", name="Create key").count() == 0
    client.assert_clean()
    await page.context.close()


async def test_signing_in_by_typing_a_key_and_a_refused_key(browser, world):
    tab = await open_tab(browser, world.net.url, None)
    page = tab.page
    await expect(page.locator("#conn")).to_have_text("Signed out")
    await page.get_by_label("API key").fill("inf-not-a-key")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#alert")).to_contain_text("Invalid API key")
    await expect(page.get_by_label("API key")).to_be_focused()
    await page.get_by_label("API key").fill(world.keys["alice"])
    await page.keyboard.press("Enter")
    await expect(page.locator("#conn")).to_have_text("Live")
    await expect(page.locator("#who")).to_contain_text("alice")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator("#conn")).to_have_text("Signed out")
    assert await page.evaluate("sessionStorage.length") == 0
    await page.context.close()


CONTRAST = """() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const bad = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!n.textContent.trim() || !el || el.closest('svg, [hidden], option') || el.closest('button:disabled')) continue;
    const box = el.getBoundingClientRect();
    if (!box.width || !box.height || getComputedStyle(el).visibility === 'hidden') continue;
    const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(background(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) bad.push(`${ratio.toFixed(2)}: ${n.textContent.trim().slice(0, 40)}`);
  }
  return bad;
}"""

UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea, button, a[href], svg[role=img], meter')]
  .filter((el) => el.offsetParent !== null || el.closest('svg'))
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby')
                  && !(['BUTTON', 'A'].includes(el.tagName) && el.textContent.trim()))
  .map((el) => el.outerHTML.slice(0, 80))"""


async def test_every_page_is_labelled_readable_and_keyboard_operable(browser, world):
    tab = await open_tab(browser, world.net.url, ADMIN_KEY)
    page = tab.page
    completed = world.jobs["alice"][0]
    for route in ("overview", "nodes", f"nodes/{world.gpu.node.identity.pubkey}", "jobs", f"jobs/{completed}", "playground", "keys"):
        await tab.go(route)
        await tab.drawn()
        assert await page.evaluate(UNLABELLED) == [], route
        assert await page.evaluate(CONTRAST) == [], route
    tab.assert_clean()
    await page.context.close()

    # keyboard only, from a fresh load: the skip link first, then the pages' links; Enter
    # follows one and the new page's heading takes the focus, with a visible ring on what has it
    tab = await open_tab(browser, world.net.url, ADMIN_KEY)
    page = tab.page
    await page.keyboard.press("Tab")
    await expect(page.locator("#skip")).to_be_focused()
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    nav_jobs = page.get_by_role("link", name="Jobs", exact=True)
    await expect(nav_jobs).to_be_focused()
    ring = await nav_jobs.evaluate("el => getComputedStyle(el).outlineStyle + ' ' + getComputedStyle(el).outlineWidth")
    assert ring.startswith("solid") and not ring.endswith(" 0px")
    await page.keyboard.press("Enter")
    await expect(page.locator("main h1")).to_be_focused()
    assert page.url.endswith("#/jobs") and await nav_jobs.get_attribute("aria-current") == "page"
    # the tables scroll by keyboard and every row's job is a link
    await expect(page.locator("#jobs-table tbody tr").first.get_by_role("link")).to_have_count(2)
    tab.assert_clean()
    await page.context.close()
