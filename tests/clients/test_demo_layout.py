"""/demo on a phone and on a desktop, in real headless Chromium (Debian's, via Playwright).

At 390 px (a phone) nothing lays out wider than the screen and the live indicator,
the bell and "Mark all read" are on screen; at 1280 px the curl example is not
clipped. One page load asks /demo/token once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from notify_client import Client
from playwright.sync_api import Browser, Page, sync_playwright

from tests.clients.conftest import SHOP_SECRET
from tests.clients.test_web_client import CHROMIUM, CHROMIUM_ARGS, WAIT_MS
from tests.live.conftest import new_user
from tests.support.servers import LiveServer

pytestmark = pytest.mark.live

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/ensure-system-deps.sh`")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_live(
    browser: Browser, server: LiveServer, viewport: dict[str, int], user: str | None = None
) -> Page:
    context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    page = context.new_page()
    page.token_requests = []  # type: ignore[attr-defined]
    page.on(
        "request",
        lambda r: page.token_requests.append(r.url) if r.url.endswith("/demo/token") else None,  # type: ignore[attr-defined]
    )
    page.goto(f"{server.url}/demo?user={user or new_user('layout')}")
    # Open comes after the recent list loaded (demo.js): both have used a token.
    page.wait_for_selector('#status[data-status="open"]', timeout=WAIT_MS)
    return page


def on_screen(page: Page, selector: str, width: int) -> bool:
    box = page.locator(selector).bounding_box()
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width


def test_the_demo_fits_a_phone(chromium: Browser, server: LiveServer) -> None:
    user = new_user("phone")
    with Client(server.url, SHOP_SECRET, trust_env=False) as publisher:
        publisher.publish(
            [user], "order.shipped", title="Your order is on its way", body="Order #1234 left."
        )
    page = open_live(chromium, server, PHONE, user)
    try:
        page.wait_for_selector('#list li[data-id="1"]', timeout=WAIT_MS)
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= PHONE["width"], f"lays out {scroll_width} px wide"
        for selector in ("#status", ".bell", "#badge", "#mark-all", "#send"):
            assert on_screen(page, selector, PHONE["width"]), f"{selector} is off-screen"
    finally:
        page.context.close()


def test_the_curl_example_is_not_clipped_on_a_desktop(
    chromium: Browser, server: LiveServer
) -> None:
    page = open_live(chromium, server, DESKTOP)
    try:
        clipped = page.eval_on_selector(".tips pre", "el => el.scrollWidth > el.clientWidth")
        assert not clipped
        assert page.evaluate("document.documentElement.scrollWidth") <= DESKTOP["width"]
    finally:
        page.context.close()


def test_one_page_load_asks_for_one_token(chromium: Browser, server: LiveServer) -> None:
    page = open_live(chromium, server, DESKTOP)
    try:
        assert len(page.token_requests) == 1, page.token_requests  # type: ignore[attr-defined]
    finally:
        page.context.close()
