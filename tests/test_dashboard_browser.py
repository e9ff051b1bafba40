"""The dashboard in a real headless Chromium (Debian's, driven by Playwright): it loads without
console errors, its charts show the traffic the test sent, and a trace opens to its steps."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from podium.testing.anthropic_fake import FakeAnthropic
from podium.testing.fakes import Quota
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import ask_behind_a_cached_system_prompt, worker

CHROMIUM = next(
    (
        path
        for path in ("/usr/bin/chromium", shutil.which("chromium") or "")
        if Path(path).is_file()
    ),
    None,
)
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = os.environ.get("PODIUM_DASHBOARD_SCREENSHOT")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (make test installs it: apt-get install chromium)",
)


async def send_traffic(running: Any) -> list[str]:
    trace_ids: list[str] = []
    async with openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client:
        for i in range(6):
            model = "alpha" if i % 3 else "beta"
            raw = await client.chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": f"question {i}"}]
            )
            trace_ids.append(raw.headers["x-podium-trace-id"])
    async with httpx.AsyncClient(base_url=running.url) as http:
        for i, trace_id in enumerate(trace_ids):
            response = await http.post(
                "/v1/feedback", json={"trace_id": trace_id, "score": i % 2 == 0}
            )
            assert response.status_code == 201
    await running.podium.recorder.flush()
    return trace_ids


@asynccontextmanager
async def dashboard_page(url: str, errors: list[str]) -> AsyncIterator[Any]:
    """The dashboard open in headless Chromium; console and page errors go to ``errors``."""
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory() as profile:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM or "/usr/bin/chromium",
                args=ARGS,
                headless=True,
                viewport={"width": 1400, "height": 1000},
            )
            try:
                page = browser.pages[0] if browser.pages else await browser.new_page()
                page.on(
                    "console",
                    lambda message: (
                        errors.append(message.text) if message.type == "error" else None
                    ),
                )
                page.on("pageerror", lambda error: errors.append(str(error)))
                await page.goto(f"{url}/dashboard")
                yield page
            finally:
                await browser.close()


async def test_dashboard_renders_traffic_and_opens_a_trace(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    workers = [
        worker("alpha", "openai", fake_openai.base_url),
        worker(
            "beta",
            "openai",
            fake_openai.base_url,
            price={"input": 10.0, "output": 30.0},
            limits={"concurrency": 4, "rpm": 600},
        ),
    ]
    fake_openai.behaviour.quota = Quota()
    async with gateway(workers) as running:
        trace_ids = await send_traffic(running)
        errors: list[str] = []
        async with dashboard_page(running.url, errors) as page:
            await page.wait_for_selector("#traces tbody tr[data-trace]")
            await page.wait_for_selector("#spend-chart svg rect")

            tiles = await page.inner_text("#tiles")
            assert "6" in tiles  # requests
            spend = await page.inner_text("#spend-chart")
            assert "alpha" in spend and "beta" in spend
            bars = await page.locator("#spend-chart svg rect[data-key='beta']").count()
            assert bars >= 1
            routing = await page.inner_text("#routing-chart")
            assert "direct → alpha" in routing and "4 (67%)" in routing
            quality = await page.inner_text("#quality-chart")
            assert "alpha · direct" in quality and "beta · direct" in quality
            latency = await page.inner_text("#latency-chart")
            assert "p50" in latency and "alpha" in latency
            rows = await page.locator("#traces tbody tr[data-trace]").count()
            assert rows == len(trace_ids)
            pool = await page.inner_text("#workers")
            assert "alpha" in pool and "serving" in pool and "closed" in pool
            assert "0 / 4" in pool and "4 at once, 600 rpm" in pool
            assert "the vendor says 499 requests, 29,000 tokens left" in pool

            await page.locator(f"#traces tr[data-trace='{trace_ids[0]}']").click()
            await page.wait_for_selector("#detail table")
            detail = await page.inner_text("#detail")
            assert trace_ids[0] in detail
            assert "Workflow steps" in detail and "beta" in detail
            assert "Decision: candidates" in detail
            if SCREENSHOT:
                await page.screenshot(path=SCREENSHOT, full_page=True)
        assert errors == []


async def test_a_step_shows_what_the_upstream_read_from_its_prompt_cache(
    gateway: Any, fake_anthropic: FakeAnthropic
) -> None:
    async with gateway([worker("claude", "anthropic", fake_anthropic.base_url)]) as running:
        trace_ids = await ask_behind_a_cached_system_prompt(running.url, "one", "two")
        await running.podium.recorder.flush()
        errors: list[str] = []
        async with dashboard_page(running.url, errors) as page:
            written, read = trace_ids
            await page.wait_for_selector(f"#traces tr[data-trace='{read}']")
            await page.locator(f"#traces tr[data-trace='{written}']").click()
            await page.wait_for_selector("#detail table")
            assert "1,101 (1,100 written)" in await page.inner_text("#detail")
            await page.locator(f"#traces tr[data-trace='{read}']").click()
            await page.wait_for_function(
                f"document.querySelector('#detail').innerText.includes('{read}')"
            )
            assert "1,101 (1,100 cached)" in await page.inner_text("#detail")
        assert errors == []
