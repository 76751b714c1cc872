"""The browser client on a page of another origin, in real headless Chromium.

A host application's page (served here by a small HTTP server on its own
port) imports notify-client.js from the service and uses it: over the
WebSocket, and, behind a proxy that refuses ``Upgrade``, over Server-Sent
Events, by itself, with the same API, resuming after a server restart and
showing each notification once. The service allows the page's origin
(``ALLOWED_ORIGINS``) and nothing else; every call is a real CORS call.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.clients.conftest import (
    FaultyProxy,
    client_server_env,
    discard,
    make_token,
    start,
    stored,
    wait_until,
)
from tests.clients.test_web_client import WAIT_MS, browser, publisher  # noqa: F401
from tests.live.conftest import new_user
from tests.support.servers import LOCALHOST, LiveServer

pytestmark = pytest.mark.live

PAGE = b"<!doctype html><meta charset=utf-8><title>host app</title><h1>host app</h1>"


class _PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def app_origin() -> Iterator[str]:
    """The host application's origin: another port, so another origin."""
    httpd = ThreadingHTTPServer((LOCALHOST, 0), _PageHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://{LOCALHOST}:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def services(app_origin: str, tmp_path: Path) -> Iterator[tuple[LiveServer, LiveServer]]:
    """The service that allows ``app_origin``, and a second process on the
    same database that takes publishes while the first is down."""
    database_url = f"sqlite:///{(tmp_path / 'origins.sqlite3').resolve()}"
    env = client_server_env(database_url, ALLOWED_ORIGINS=app_origin)
    main = start(env)
    other = start(env, migrate=False)
    yield main, other
    discard(other)
    discard(main)


@pytest.fixture
def page_context(browser: Browser) -> Iterator[BrowserContext]:  # noqa: F811
    """A fresh browser profile; fails the test on any uncaught page error."""
    ctx = browser.new_context()
    errors: list[str] = []
    ctx.on("weberror", lambda error: errors.append(str(error.error)))
    yield ctx
    ctx.close()
    assert not errors, f"uncaught errors in the page: {errors}"


HARNESS = """
async ([service, socketUrl, user, ttl, options]) => {
  const { NotifyClient } = await import(`${service}/static/notify/notify-client.js`);
  const log = { notes: [], reads: [], statuses: [], readies: [], errors: [] };
  const client = new NotifyClient({
    url: socketUrl,
    getToken: async () => await window.mintToken(user, ttl),
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


def host_page(
    context: BrowserContext,
    app_origin: str,
    service: str,
    socket_url: str,
    user: str,
    *,
    ttl: int = 3600,
    **options: Any,
) -> Page:
    page = context.new_page()
    page.expose_function("mintToken", lambda sub, exp_in: make_token(sub, exp_in=exp_in))
    page.goto(app_origin + "/")
    page.evaluate(HARNESS, [service, socket_url, user, ttl, options])
    page.wait_for_function("() => window.log.readies.length >= 1", timeout=WAIT_MS)
    return page


def wait_js(page: Page, expression: str, arg: Any = None) -> None:
    page.wait_for_function(expression, arg=arg, timeout=WAIT_MS)


def use_the_api(page: Page, server: LiveServer, user: str) -> None:
    """Live notifications, unread count, list and mark read, from the page."""
    with publisher(server) as client:
        client.publish([user], "t", title="one")
        client.publish([user], "t", title="two")
    wait_js(page, "() => window.log.notes.length === 2")
    assert page.evaluate("client.unreadCount()") == 2
    listed = page.evaluate("client.list().then((p) => p.results.map((n) => n.title))")
    assert listed == ["two", "one"]
    page.evaluate("client.markRead(['1'])")
    wait_until(lambda: stored(server, user)[0]["read_at"] is not None, what="the read stored")
    assert page.evaluate("client.markAllRead()") == 1
    assert page.evaluate("client.unreadCount()") == 0
    assert page.evaluate("window.log.errors") == []


def test_a_page_on_another_origin_uses_the_client_over_the_websocket(
    services: tuple[LiveServer, LiveServer], page_context: BrowserContext, app_origin: str
) -> None:
    server, _ = services
    user = new_user("origin")
    page = host_page(
        page_context, app_origin, server.url, f"{server.ws_url}/ws/notifications", user
    )
    assert page.evaluate("client.transport") == "websocket"
    use_the_api(page, server, user)
    assert page.evaluate("window.log.notes") == ["1", "2"]


def test_behind_a_proxy_that_refuses_upgrade_the_page_works_over_sse_across_a_restart(
    services: tuple[LiveServer, LiveServer], page_context: BrowserContext, app_origin: str
) -> None:
    main, other = services
    proxy = FaultyProxy(main.port, refuse_upgrade=True)
    try:
        user = new_user("sse")
        socket_url = f"ws://{LOCALHOST}:{proxy.port}/ws/notifications"
        page = host_page(page_context, app_origin, main.url, socket_url, user)
        assert page.evaluate("client.transport") == "sse"
        assert proxy.refused_upgrades >= 2
        use_the_api(page, main, user)

        main.stop()
        wait_js(page, "() => window.client.status !== 'open'")
        with publisher(other) as client:
            client.publish([user], "t", title="while down")
        main.start()  # same port, behind the same proxy
        wait_js(page, "() => window.log.readies.length >= 2")
        with publisher(main) as client:
            client.publish([user], "t", title="after")
        wait_js(page, "() => window.log.notes.length >= 4")
        assert page.evaluate("client.transport") == "sse"
        ready = page.evaluate("window.log.readies.at(-1)")
        assert ready["complete"] is True
        # Each notification once, in order, the one published while down included.
        with publisher(main) as client:
            client.publish([user], "t", title="last")
        wait_js(page, "() => window.log.notes.length >= 5")
        assert page.evaluate("window.log.notes") == ["1", "2", "3", "4", "5"]
        assert page.evaluate("client.unreadCount()") == 3
        assert page.evaluate("window.client.status") == "open"
    finally:
        proxy.close()


def test_the_client_goes_back_to_the_websocket_on_a_later_reconnect(
    services: tuple[LiveServer, LiveServer], page_context: BrowserContext, app_origin: str
) -> None:
    server, _ = services
    proxy = FaultyProxy(server.port, refuse_upgrade=True)
    try:
        user = new_user("back")
        socket_url = f"ws://{LOCALHOST}:{proxy.port}/ws/notifications"
        # Tokens live 3 s: every stream ends with 4401 and the client reconnects.
        page = host_page(
            page_context, app_origin, server.url, socket_url, user, ttl=3, wsRetryAfter=500
        )
        assert page.evaluate("client.transport") == "sse"
        proxy.refuse_upgrade = False  # the network lets WebSockets through again
        wait_js(page, "() => window.client.transport === 'websocket' && client.status === 'open'")
        with publisher(server) as client:
            client.publish([user], "t", title="over the socket")
        wait_js(page, "() => window.log.notes.length === 1")
        assert page.evaluate("window.log.notes") == ["1"]
    finally:
        proxy.close()
