"""The browser client (notify-client.js) and the /demo page in real headless Chromium.

Debian's ``chromium`` (``scripts/ensure-system-deps.sh`` installs it), driven by
Playwright for Python; Playwright never downloads a browser here. Every page
talks to a live uvicorn process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from notify_client import Client
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.clients.conftest import (
    SHOP_SECRET,
    client_server_env,
    discard,
    make_token,
    start,
    stored,
    wait_until,
)
from tests.live.conftest import new_user, server_env
from tests.support.servers import LiveServer

pytestmark = pytest.mark.live

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000  # generous: a loaded machine; the waits end as soon as the page is there


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/ensure-system-deps.sh`")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile; fails the test on any uncaught page error."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    ctx.on("weberror", lambda error: errors.append(str(error.error)))
    yield ctx
    ctx.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def publisher(server: LiveServer) -> Client:
    return Client(server.url, SHOP_SECRET, trust_env=False, backoff=0.05)


def open_demo(context: BrowserContext, server: LiveServer, user: str) -> Page:
    """Open /demo as ``user``, wait until it is live, and record every id it is handed."""
    page = context.new_page()
    page.goto(f"{server.url}/demo?user={user}")
    page.wait_for_selector('#status[data-status="open"]', timeout=WAIT_MS)
    page.evaluate(
        "() => { window.seen = [];"
        " window.notifyDemo.client.onNotification((n) => window.seen.push(n.id)); }"
    )
    return page


def list_ids(page: Page) -> list[str]:
    ids: list[str] = page.eval_on_selector_all("#list li", "els => els.map(e => e.dataset.id)")
    return ids


def wait_items(page: Page, count: int) -> None:
    page.wait_for_function(
        "n => document.querySelectorAll('#list li').length >= n", arg=count, timeout=WAIT_MS
    )


def wait_badge(page: Page, text: str) -> None:
    page.wait_for_function(
        "t => document.getElementById('badge').textContent === t", arg=text, timeout=WAIT_MS
    )


# --------------------------------------------------------------------------- serving


def test_client_is_served_and_demo_is_off_in_production(server: LiveServer, tmp_path: Path) -> None:
    # `server` runs with DEBUG=false (and DEMO_ENABLED=true).
    with httpx.Client(base_url=server.url, trust_env=False) as http:
        js = http.get("/static/notify/notify-client.js")
        assert js.status_code == 200
        assert js.headers["content-type"].split(";")[0] in (
            "text/javascript",
            "application/javascript",
        )
        assert b"export class NotifyClient" in js.content
        assert http.get("/static/notify/notify-client.d.ts").status_code == 200
        demo = http.get("/demo")
        assert demo.status_code == 200 and "notify/demo.js" in demo.text

    # DEBUG=false without DEMO_ENABLED: no demo at all.
    prod = start(client_server_env(f"sqlite:///{(tmp_path / 'prod.sqlite3').resolve()}"))
    try:
        with httpx.Client(base_url=prod.url, trust_env=False) as http:
            same_origin = {"Origin": prod.url, "Content-Type": "application/json"}
            assert http.get("/demo").status_code == 404
            assert (
                http.post("/demo/token", headers=same_origin, content=b'{"user": "a"}').status_code
                == 404
            )
            send = http.post(
                "/demo/send", headers=same_origin, content=b'{"recipients": ["a"], "type": "t"}'
            )
            assert send.status_code == 404
            assert http.get("/static/notify/notify-client.js").status_code == 200
    finally:
        discard(prod)


def test_demo_endpoints_take_same_origin_json_only(server: LiveServer) -> None:
    user = new_user("demo")
    body = f'{{"user": "{user}"}}'.encode()
    json_type = {"Content-Type": "application/json"}
    same = {"Origin": server.url, **json_type}
    with httpx.Client(base_url=server.url, trust_env=False) as http:
        assert http.post("/demo/token", headers=json_type, content=body).status_code == 403
        evil = {"Origin": "http://evil.example", **json_type}
        assert http.post("/demo/token", headers=evil, content=body).status_code == 403
        cross = {**same, "Sec-Fetch-Site": "cross-site"}
        assert http.post("/demo/token", headers=cross, content=body).status_code == 403
        form = {"Origin": server.url, "Content-Type": "text/plain"}
        assert http.post("/demo/token", headers=form, content=body).status_code == 415
        assert http.post("/demo/token", headers=same, content=b"{nope").status_code == 400
        assert http.post("/demo/token", headers=same, content=b'{"user": ""}').status_code == 400
        assert http.get("/demo/token").status_code == 405

        minted = http.post("/demo/token", headers=same, content=body)
        assert minted.status_code == 200, minted.text
        token = minted.json()["token"]
        unread = http.get(
            "/api/v1/me/notifications/unread-count", headers={"Authorization": f"Bearer {token}"}
        )
        assert unread.json() == {"unread": 0}

        bad = http.post("/demo/send", headers=same, content=b'{"recipients": [], "type": "a b"}')
        assert bad.status_code == 400 and {"recipients", "type"} <= set(bad.json())
        sent = http.post(
            "/demo/send",
            headers=same,
            content=f'{{"recipients": ["{user}"], "type": "demo.hello", "title": "hi"}}'.encode(),
        )
        assert sent.status_code == 202 and sent.json()["recipients"] == 1
        assert http.post("/demo/send", headers=evil, content=b"{}").status_code == 403
    notes = stored(server, user)
    assert [(n["title"], n["source"]) for n in notes] == [("hi", "demo")]


# --------------------------------------------------------------------------- the demo


def test_demo_shows_live_notifications(
    server: LiveServer, context: BrowserContext, tmp_path: Path
) -> None:
    user = new_user("demo")
    page = open_demo(context, server, user)
    assert page.inner_text("#badge") == "0"
    with publisher(server) as client:
        client.publish(
            [user], "order.shipped", title="Your order is on its way", body="Order #1234 left."
        )
        client.publish([user], "comment.new", title="Bob replied to your comment", body="Ship it!")
        client.publish([user], "billing.invoice", title="Invoice #2026-11 is ready")
    wait_items(page, 3)
    wait_badge(page, "3")
    assert list_ids(page) == ["3", "2", "1"]  # newest first
    assert page.inner_text('#list li[data-id="2"] .title') == "Bob replied to your comment"

    page.click('#list li[data-id="1"] button.mark-read')
    wait_badge(page, "2")
    page.wait_for_selector('#list li[data-id="1"].read', timeout=WAIT_MS)
    wait_until(
        lambda: [n["read_at"] is not None for n in stored(server, user)] == [True, False, False],
        what="the read to be stored",
    )
    # The picture once the "fresh" highlight (and its CSS fade) is gone.
    page.wait_for_function(
        "() => !document.querySelector('#list li.fresh') && document.getAnimations().length === 0",
        timeout=WAIT_MS,
    )
    shots = Path(os.environ.get("NOTIFY_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / "demo.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    assert page.evaluate("window.seen") == ["1", "2", "3"]

    # A reload shows what is stored (read state included) and the unread count.
    page.reload()
    page.wait_for_selector('#status[data-status="open"]', timeout=WAIT_MS)
    wait_items(page, 3)
    wait_badge(page, "2")
    assert page.locator("#list li.read").count() == 1


def test_two_tabs_stay_in_sync(server: LiveServer, context: BrowserContext) -> None:
    user = new_user("demo")
    tab_a = open_demo(context, server, user)
    tab_b = open_demo(context, server, user)

    tab_a.fill('#send-form input[name="title"]', "Sent from tab A")
    tab_a.fill('#send-form textarea[name="body"]', "Through the demo form.")
    tab_a.click("#send")
    for tab in (tab_a, tab_b):
        wait_items(tab, 1)
        wait_badge(tab, "1")
    assert tab_b.inner_text('#list li[data-id="1"] .title') == "Sent from tab A"
    assert "Sent to 1 user" in tab_a.inner_text("#send-result")

    tab_a.click('#list li[data-id="1"] button.mark-read')
    tab_b.wait_for_selector('#list li[data-id="1"].read', timeout=WAIT_MS)
    wait_badge(tab_b, "0")
    wait_badge(tab_a, "0")

    with publisher(server) as client:
        client.publish([user], "t", title="two")
        client.publish([user], "t", title="three")
    for tab in (tab_a, tab_b):
        wait_items(tab, 3)
        wait_badge(tab, "2")
    tab_b.click("#mark-all")
    tab_a.wait_for_function(
        "() => document.querySelectorAll('#list li.unread').length === 0", timeout=WAIT_MS
    )
    wait_badge(tab_a, "0")
    wait_badge(tab_b, "0")
    for tab in (tab_a, tab_b):
        assert tab.evaluate("window.seen") == ["1", "2", "3"]
    assert all(n["read_at"] for n in stored(server, user))


def test_page_reconnects_after_a_restart_and_shows_what_it_missed_once(
    context: BrowserContext, tmp_path: Path
) -> None:
    database_url = f"sqlite:///{(tmp_path / 'restart.sqlite3').resolve()}"
    # Dev mode (the demo's default) on a SQLite file, and a second process on the
    # same file that takes publishes while the first is down.
    main = start(server_env(database_url, DEBUG="true", NOTIFY_DRAIN_SECONDS="0.5"))
    other = start(client_server_env(database_url), migrate=False)
    try:
        user = new_user("demo")
        page = open_demo(context, main, user)
        with publisher(main) as client:
            client.publish([user], "t", title="before the restart")
        wait_items(page, 1)

        main.stop()
        page.wait_for_selector('#status:not([data-status="open"])', timeout=WAIT_MS)
        with publisher(other) as client:
            client.publish([user], "t", title="while down 1")
            client.publish([user], "t", title="while down 2")
        main.start()  # same port

        wait_items(page, 3)
        page.wait_for_selector('#status[data-status="open"]', timeout=WAIT_MS)
        with publisher(main) as client:
            client.publish([user], "t", title="after the restart")
        wait_items(page, 4)
        wait_badge(page, "4")
        # No duplicate comes later: a marker published last follows anything
        # still on its way down the user's channel (a pause could only hope so).
        with publisher(main) as client:
            client.publish([user], "t", title="marker")
        page.wait_for_selector('#list li[data-id="5"]', timeout=WAIT_MS)
        assert list_ids(page) == ["5", "4", "3", "2", "1"]
        assert page.evaluate("window.seen") == ["1", "2", "3", "4", "5"]
        assert page.inner_text('#list li[data-id="2"] .title') == "while down 1"
    finally:
        discard(other)
        discard(main)


# --------------------------------------------------------------------------- the client API


HARNESS = """
async ([user, ttl, options]) => {
  const { NotifyClient } = await import("/static/notify/notify-client.js");
  const log = { notes: [], reads: [], statuses: [], readies: [], tokens: 0, errors: [] };
  const client = new NotifyClient({
    getToken: async () => { log.tokens += 1; return await window.mintToken(user, ttl); },
    minDelay: 100,
    maxDelay: 1000,
    ...options,
  });
  client.onNotification((n) => log.notes.push(n.id));
  client.onRead((ids) => log.reads.push(ids));
  client.onStatus((status, info) => log.statuses.push([status, info.code ?? null]));
  client.onReady((frame) => log.readies.push(frame));
  client.onError((err) => log.errors.push(String(err)));
  window.log = log;
  window.client = client;
}
"""


def harness(
    context: BrowserContext, server: LiveServer, user: str, ttl: int, **options: Any
) -> Page:
    page = context.new_page()
    page.expose_function("mintToken", lambda sub, exp_in: make_token(sub, exp_in=exp_in))
    # A same-origin page whose CSP allows same-origin scripts (API responses
    # carry default-src 'none', which blocks the module import).
    page.goto(f"{server.url}/static/notify/demo.css")
    page.evaluate(HARNESS, [user, ttl, options])
    return page


def wait_js(page: Page, expression: str, arg: Any = None) -> None:
    page.wait_for_function(expression, arg=arg, timeout=WAIT_MS)


def test_client_reconnects_with_a_fresh_token_on_4401(
    server: LiveServer, context: BrowserContext
) -> None:
    user = new_user("web")
    page = harness(context, server, user, ttl=2)
    wait_js(page, "() => window.log.readies.length >= 1")
    with publisher(server) as client:
        client.publish([user], "t", title="one")
        wait_js(page, "() => window.log.notes.length >= 1")
        # The token expires: the server closes with 4401, the client asks for a new one.
        wait_js(
            page,
            "() => window.log.statuses.some(([s, code]) => code === 4401)"
            " && window.log.readies.length >= 2",
        )
        client.publish([user], "t", title="two")
    wait_js(page, "() => window.log.notes.length >= 2")
    log = page.evaluate("window.log")
    page.evaluate("window.client.close()")
    assert log["notes"] == ["1", "2"]
    assert log["tokens"] >= 2
    assert log["readies"][1]["complete"] is True


# Holds each answer to GET .../unread-count while `window.holdCounts` is set,
# until the test releases it; counts the answers the client got.
HOLD_UNREAD_COUNTS = """
(() => {
  const realFetch = window.fetch.bind(window);
  window.heldCounts = [];
  window.countsAnswered = 0;
  window.fetch = async (input, init) => {
    const response = await realFetch(input, init);
    if (String(input).includes("/unread-count")) {
      if (window.holdCounts) await new Promise((release) => window.heldCounts.push(release));
      window.countsAnswered += 1;
    }
    return response;
  };
})();
"""


def test_a_count_answered_before_a_live_frame_does_not_undo_the_frame(
    server: LiveServer, context: BrowserContext
) -> None:
    # The server counts 1 unread; a live notification arrives while that answer
    # is on its way. The frame's count (2) must stand: the answer may predate it.
    user = new_user("web")
    with publisher(server) as client:
        client.publish([user], "t", title="stored 1")
    context.add_init_script(HOLD_UNREAD_COUNTS)
    page = harness(context, server, user, ttl=3600)
    wait_js(page, "() => window.log.readies.length >= 1")
    assert page.evaluate("window.client.unread") == 1
    page.evaluate(
        "() => { window.counts = []; window.client.onUnreadCount((c) => window.counts.push(c));"
        " window.holdCounts = true; window.asked = window.client.unreadCount(); }"
    )
    wait_js(page, "() => window.heldCounts.length === 1")  # answered 1, held
    with publisher(server) as client:
        client.publish([user], "t", title="live 2")
    wait_js(page, "() => window.client.unread === 2")
    page.evaluate("() => { window.holdCounts = false; window.heldCounts.forEach((r) => r()); }")
    assert page.evaluate("() => window.asked") == 1  # what the server said, then
    # The client asks again rather than trust it; the second answer agrees.
    wait_js(page, "() => window.countsAnswered >= 2")
    assert page.evaluate("window.client.unread") == 2
    assert page.evaluate("window.counts") == [2]


def test_client_refetches_when_the_replay_is_incomplete_and_tracks_reads(
    server: LiveServer, context: BrowserContext
) -> None:
    user = new_user("web")
    with publisher(server) as client:
        client.publish([user], "t", title="stored 1")
        client.publish([user], "t", title="stored 2")
    # Resuming from an id the server never had (e.g. its database was reset):
    # `ready.complete` is false and the client refetches over the user API.
    page = harness(context, server, user, ttl=3600, lastId="999")
    wait_js(page, "() => window.log.notes.length >= 2")
    ready = page.evaluate("window.log.readies[0]")
    assert ready["complete"] is False
    assert page.evaluate("window.client.lastId") == "2"
    with publisher(server) as client:
        client.publish([user], "t", title="live 3")
    wait_js(page, "() => window.log.notes.length >= 3")
    wait_js(page, "() => window.client.unread === 3")

    # A read elsewhere (REST) reaches this socket as a `read` frame.
    user_auth = {"Authorization": f"Bearer {make_token(user)}"}
    with httpx.Client(base_url=server.url, headers=user_auth, trust_env=False) as http:
        assert http.post("/api/v1/me/notifications/read", json={"ids": ["3"]}).json() == {
            "updated": 1
        }
        wait_js(page, "() => window.log.reads.some((ids) => ids.includes('3'))")
        wait_js(page, "() => window.client.unread === 2")

        # markRead over the socket, then the REST count agrees.
        page.evaluate("window.client.markRead(['1'])")
        wait_until(
            lambda: http.get("/api/v1/me/notifications/unread-count").json() == {"unread": 1},
            what="the socket read frame to be stored",
        )
        assert page.evaluate("window.client.unreadCount()") == 1
        assert page.evaluate("window.client.loadRecent(10).then((r) => r.length)") == 3

        # With the socket closed, markRead goes over REST.
        page.evaluate("window.client.close()")
        page.evaluate("window.client.markRead(['2'])")
        assert http.get("/api/v1/me/notifications/unread-count").json() == {"unread": 0}
        missing = page.evaluate("window.client.markRead(['77']).then(() => 0, (err) => err.status)")
        assert missing == 404

    log = page.evaluate("window.log")
    assert log["notes"] == ["1", "2", "3"]  # no duplicate, despite loadRecent
    assert log["reads"][:2] == [["3"], ["1"]]
    assert page.evaluate("window.client.status") == "closed"
