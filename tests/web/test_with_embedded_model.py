"""The dashboard against a network serving the real embedded model (SmolLM2-135M on the
CPU): a chat in the playground streams an answer, its job page shows the receipt verified
in the browser, the overview shows the node and its charts. This run also takes the
screenshots in docs/screenshots/ (the README links them).

Beside the embedded node runs one node on the fake engine that advertises an RTX 4090, so
the pictures show the GPU and VRAM columns too; its backend reads `fake`.
"""

from __future__ import annotations

import re

import pytest
import pytest_asyncio
from playwright.async_api import expect

from infernet.backends.embedded import EMBEDDED_MODEL, EmbeddedBackend
from infernet.backends.fake import FakeBackend
from infernet.control import Settings
from infernet.control.health.verify import VerifyPolicy
from infernet.protocol import receipts
from tests.harness import ADMIN_KEY, GPU_BOX, Network
from tests.web.conftest import shoot
from tests.web.pages import open_tab

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


# Counts how the answer's text grows while the stream runs: more than one length seen while
# aria-busy is true means it was drawn token by token, not at the end.
WATCH = """() => {
  window.__seen = [];
  new MutationObserver(() => {
    const a = document.querySelector('#chat-answer');
    if (a) window.__seen.push([a.textContent.length, a.getAttribute('aria-busy')]);
  }).observe(document.querySelector('#chat-log'), { subtree: true, childList: true, characterData: true, attributes: true });
}"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def net(tmp_path_factory):
    settings = Settings(heartbeat_s=0.5, dashboard_tick_s=0.5, verify=VerifyPolicy(canary_rate=0))
    async with Network.start(tmp=tmp_path_factory.mktemp("web-embedded"), settings=settings) as net:
        await net.add_node(EmbeddedBackend(n_ctx=2048), name="embedded-cpu")
        await net.add_node(FakeBackend(("fake-model",), reply="an answer from the fake engine " * 3, delay_s=0.01), name="gpu-demo", tier=">=24gb", hardware=GPU_BOX)
        alice = await net.funded_key("alice")
        async with net.client(alice) as c:
            for prompt in ("one", "two"):
                r = await c.post("/v1/chat/completions", json={"model": "fake-model", "messages": [{"role": "user", "content": prompt}]})
                assert r.status_code == 200, r.text
        yield net


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chatted(browser, net):
    """A chat in the playground, streamed from the embedded model; what it showed."""
    tab = await open_tab(browser, net.url, ADMIN_KEY, "playground")
    page = tab.page
    await expect(page.get_by_label("Model")).to_contain_text(EMBEDDED_MODEL)
    await page.get_by_label("Model").select_option(EMBEDDED_MODEL)
    await page.get_by_label("System prompt").fill("You are a helpful assistant. Answer in one sentence.")
    await page.get_by_label("Temperature").fill("0")
    await page.get_by_label("Max tokens").fill("40")
    await page.get_by_label("Seed").fill("7")
    await page.evaluate(WATCH)
    await page.get_by_role("textbox", name="Message").fill("What is the capital of France?")
    await page.keyboard.press("Enter")
    await expect(page.locator("#chat-charged")).to_contain_text("signed receipt", timeout=60_000)
    yield tab


async def test_a_chat_in_the_playground_streams_an_answer_from_the_embedded_model(net, chatted):
    page = chatted.page
    answer = await page.locator("#chat-answer").inner_text()
    assert "Paris" in answer
    seen = await page.evaluate("window.__seen")
    growing = {n for n, busy in seen if busy == "true" and n > 0}
    assert len(growing) >= 2, seen  # drawn as it streamed
    assert seen[-1] == [len(await page.locator("#chat-answer").text_content()), "false"]
    job_id = (await page.locator("#chat-job").inner_text()).strip()
    async with net.client() as c:
        job = (await c.get(f"/api/v1/jobs/{job_id}")).json()
        nodes = {n["id"]: n for n in (await c.get("/api/v1/nodes")).json()["data"]}
        doc = (await c.get(f"/api/v1/jobs/{job_id}/receipt")).json()
    assert job["model"] == EMBEDDED_MODEL and job["result"]["text"] == await page.locator("#chat-answer").text_content()
    usage = job["usage"]
    await expect(page.locator("#chat-tokens")).to_have_text(f"{usage['prompt_tokens']} in, {usage['completion_tokens']} out")
    await expect(page.locator("#chat-ttft")).to_have_text(re.compile(r"^\d+ ms$|^\d+\.\d+ s$"))
    await expect(page.locator("#chat-speed")).to_have_text(re.compile(r"tokens/s$"))
    rates = nodes[job["node_id"]]["price"]
    price = receipts.price(usage["prompt_tokens"], usage["completion_tokens"], rates["input"], rates["output"])
    await expect(page.locator("#chat-price")).to_contain_text(f"{receipts.usdc(price)} USDC")
    await expect(page.locator("#chat-charged")).to_have_text(f"{receipts.usdc(doc['settlement']['price'])} USDC (signed receipt)")
    await shoot(page, "playground")
    chatted.assert_clean()


async def test_the_chats_job_page_shows_its_receipt_verified_in_the_browser(net, chatted):
    page = chatted.page
    await page.locator("#chat-job a").click()
    await expect(page.locator("#receipt-verdict")).to_have_text("Verified in this browser", timeout=20_000)
    checks = page.locator("#receipt .checks li")
    assert await checks.count() == 6 and await page.locator("#receipt .checks li.fail").count() == 0
    await expect(page.locator("main")).to_contain_text("Paris")
    await expect(page.locator("#events-table tbody tr").last).to_contain_text("done")
    await shoot(page, "job")
    chatted.assert_clean()


async def test_the_overview_shows_the_node_and_its_charts(browser, net, chatted):
    tab = await open_tab(browser, net.url, ADMIN_KEY)
    page = tab.page
    await expect(page.locator(".stat", has_text="Nodes online")).to_contain_text("2")
    await expect(page.locator(".stat", has_text="By tier")).to_contain_text("1 cpu")
    await expect(page.locator("#chart-nodes svg")).to_have_attribute("aria-label", re.compile(r"all: now 2, .*cpu: now 1"))
    await expect(page.locator("#chart-jobs svg")).to_have_attribute("aria-label", re.compile(r"Jobs per minute: now [1-9]"))
    # tokens over the minute: one short answer in a minute is well under one a second
    await expect(page.locator("#chart-tps svg")).to_have_attribute("aria-label", re.compile(r"now (0\.[1-9]|[1-9])"))
    await expect(page.locator("#chart-ttft svg")).to_have_attribute("aria-label", re.compile(r"now \d"))
    await shoot(page, "overview")
    await tab.go("nodes")
    row = page.locator("#nodes-table tbody tr", has_text="embedded-cpu")
    await expect(row).to_contain_text(EMBEDDED_MODEL)
    await expect(row).to_contain_text("tok/s")
    await expect(row).to_contain_text("expected 2–20")
    await shoot(page, "nodes")
    await row.get_by_role("link", name="embedded-cpu").click()
    await expect(page.locator("main")).to_contain_text("Recent jobs on this node")
    await expect(page.locator("main table tbody a[href^='#/jobs/chatcmpl-']")).to_have_count(1)
    await tab.drawn()
    await shoot(page, "node")
    await tab.go("jobs")
    await expect(page.locator("#jobs-table tbody tr")).to_have_count(3)
    await shoot(page, "jobs")
    await tab.go("keys")
    await expect(page.locator("#keys-table")).to_contain_text("alice")
    await page.get_by_role("button", name="Manage alice").click()
    await tab.drawn()
    await shoot(page, "keys")
    tab.assert_clean()
    await page.context.close()
