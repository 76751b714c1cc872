"""notify-sw.js in real headless Chromium: pushes delivered through the
DevTools protocol (``ServiceWorker.deliverPushMessage``; headless Chromium
cannot reach a real push service), notifications read back with
``registration.getNotifications()``, and a click dispatched in the worker.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, CDPSession, Page, Worker

from tests.clients.conftest import make_token, stored, wait_until
from tests.clients.test_web_client import WAIT_MS, browser, open_demo, publisher  # noqa: F401
from tests.live.conftest import new_user
from tests.support.servers import LiveServer

pytestmark = pytest.mark.live

SW_SCOPE = "/static/notify/"
WARM_UP: dict[str, Any] = {
    "id": "warm-up",
    "type": "warm-up",
    "title": "warm-up",
    "body": "",
    "data": {},
    "created_at": "2026-01-01T00:00:00Z",
}


def attach(page: Page) -> None:
    """The page registers notify-sw.js and listens to it (no permission prompt)."""
    page.evaluate(
        "async () => { window.clicks = [];"
        " navigator.serviceWorker.addEventListener('message', (e) => window.clicks.push(e.data));"
        " await window.notifyDemo.client.attachPush(); }"
    )


def pump_until(page: Page, check: Any, what: str) -> Any:
    """``wait_until`` that lets Playwright's sync API deliver events meanwhile."""
    for _ in range(400):
        value = check()
        if value:
            return value
        page.wait_for_timeout(50)
    raise AssertionError(f"gave up after 20s waiting for {what}")


def registration_id(cdp: CDPSession, page: Page, server: LiveServer) -> str:
    found: dict[str, str] = {}

    def seen(event: dict[str, Any]) -> None:
        for registration in event["registrations"]:
            if registration["scopeURL"] == server.url + SW_SCOPE and not registration.get(
                "isDeleted"
            ):
                found["id"] = registration["registrationId"]

    cdp.on("ServiceWorker.workerRegistrationUpdated", seen)
    cdp.send("ServiceWorker.enable")
    pump_until(page, lambda: "id" in found, "the service worker registration")
    warm_up(cdp, page, server, found["id"])
    return found["id"]


def warm_up(cdp: CDPSession, page: Page, server: LiveServer, reg: str) -> None:
    """One push shown and closed before the pushes under test."""
    deliver_until(
        cdp, page, server, reg, WARM_UP, lambda: notifications(page, WARM_UP["id"]), "warm-up"
    )
    page.evaluate(
        """async ({ tag, scope }) => {
            const reg = await navigator.serviceWorker.getRegistration(scope);
            (await reg.getNotifications({ tag })).forEach((n) => n.close());
        }""",
        {"tag": WARM_UP["id"], "scope": SW_SCOPE},
    )
    pump_until(page, lambda: not notifications(page, WARM_UP["id"]), "the warm-up closed")


def deliver_until(
    cdp: CDPSession,
    page: Page,
    server: LiveServer,
    reg: str,
    payload: dict[str, Any],
    check: Any,
    what: str,
) -> None:
    """Deliver ``payload`` again until ``check`` sees it handled.

    Headless Chromium now and then loses a push handed over the DevTools
    protocol (most often the first one to a freshly activated worker, about
    once in 30 runs, but later ones too under load); a second delivery of the
    same push has always arrived, and the worker holds no state a lost push
    could change. So each push under test is delivered until the worker has
    handled it: the assertions are about what the worker does with a push,
    not about the DevTools channel.
    """
    for _ in range(8):
        deliver(cdp, server, reg, payload)
        for _ in range(60):
            if check():
                return
            page.wait_for_timeout(50)
    raise AssertionError(f"the worker never handled the push ({what}) in 8 deliveries")


def deliver(cdp: CDPSession, server: LiveServer, reg: str, payload: dict[str, Any]) -> None:
    cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": server.url, "registrationId": reg, "data": json.dumps(payload)},
    )


def notifications(page: Page, tag: str | None = None) -> list[dict[str, Any]]:
    shown: list[dict[str, Any]] = page.evaluate(
        """async (tag) => {
            const reg = await navigator.serviceWorker.getRegistration('/static/notify/');
            const found = await reg.getNotifications(tag ? { tag } : undefined);
            return found.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data }));
        }""",
        tag,
    )
    return shown


def push_payload(n: dict[str, Any]) -> dict[str, Any]:
    return {key: n[key] for key in ("id", "type", "title", "body", "data", "created_at")}


def worker(context: BrowserContext, page: Page) -> Worker:
    workers = pump_until(page, lambda: context.service_workers, "the service worker")
    return workers[0]  # type: ignore[no-any-return]


def watch(sw: Worker) -> None:
    """Record the id of every push the worker handles (each asks ``shown``)."""
    sw.evaluate(
        """() => {
            self.handled = [];
            const has = shown.has.bind(shown);
            shown.has = (id) => { self.handled.push(id); return has(id); };
        }"""
    )


def handled(sw: Worker, id_: str) -> int:
    count: int = sw.evaluate("id => self.handled.filter((h) => h === id).length", id_)
    return count


def test_service_worker_shows_pushes_once_and_a_click_marks_read(
    browser: Any,  # noqa: F811
    server: LiveServer,
) -> None:
    user = new_user("sw")
    context = browser.new_context()
    try:
        context.grant_permissions(["notifications"], origin=server.url)
        page = open_demo(context, server, user)
        attach(page)
        cdp = context.new_cdp_session(page)
        reg = registration_id(cdp, page, server)
        page.evaluate("() => window.notifyDemo.client.close()")  # the tab sees nothing live

        with publisher(server) as pub:
            pub.publish(
                [user],
                type="order.shipped",
                title="Shipped",
                body="On its way",
                data={"url": "/demo?user=" + user},
            )
        (n,) = stored(server, user)
        sw = worker(context, page)
        watch(sw)
        show = (cdp, page, server, reg, push_payload(n))
        deliver_until(*show, lambda: notifications(page, n["id"]), "the notification")
        seen = handled(sw, n["id"])
        deliver_until(*show, lambda: handled(sw, n["id"]) > seen, "the same id again")
        marker = {**push_payload(n), "id": "999999", "title": "marker"}
        # Shown after the repeat's own showNotification (pushes run in order).
        deliver_until(
            cdp, page, server, reg, marker, lambda: notifications(page, "999999"), "the marker"
        )
        shown = notifications(page, n["id"])
        assert [(s["title"], s["body"], s["tag"]) for s in shown] == [
            ("Shipped", "On its way", n["id"])
        ]
        assert shown[0]["data"]["url"] == "/demo?user=" + user

        # A click: the worker finds the open tab, asks the browser to focus it,
        # and tells it, and the tab marks the notification read. The focus
        # itself needs the user activation of a real click, which a dispatched
        # event does not carry (Chromium refuses it), so what is checked is
        # that the worker asked for it, on this tab: WindowClient.focus is
        # watched in the worker by the test, then called through.
        sw.evaluate(
            """async (tag) => {
                self.focusAsked = [];
                const focus = WindowClient.prototype.focus;
                WindowClient.prototype.focus = function () {
                    self.focusAsked.push(this.url);
                    return focus.call(this);
                };
                const [n] = await self.registration.getNotifications({ tag });
                self.dispatchEvent(new NotificationEvent('notificationclick', { notification: n }));
            }""",
            n["id"],
        )
        page.wait_for_function(
            "id => window.clicks.some((m) => m.type === 'notify:clicked' && m.id === id)",
            arg=n["id"],
            timeout=WAIT_MS,
        )
        pump_until(page, lambda: sw.evaluate("() => self.focusAsked.length"), "the focus")
        assert sw.evaluate("() => self.focusAsked") == [page.url]
        wait_until(lambda: stored(server, user)[0]["read_at"], what="read after the click")
        assert notifications(page, n["id"]) == []  # the click closed it
    finally:
        context.close()


def test_a_push_for_an_id_the_page_showed_live_is_dropped(
    browser: Any,  # noqa: F811
    server: LiveServer,
) -> None:
    user = new_user("sw")
    context = browser.new_context()
    try:
        context.grant_permissions(["notifications"], origin=server.url)
        page = open_demo(context, server, user)
        attach(page)
        cdp = context.new_cdp_session(page)
        reg = registration_id(cdp, page, server)
        with publisher(server) as pub:
            pub.publish([user], type="chat.message", title="Live")
        page.wait_for_function("() => window.seen.length === 1", timeout=WAIT_MS)
        (n,) = stored(server, user)
        sw = worker(context, page)
        pump_until(page, lambda: sw.evaluate("id => shown.has(id)", n["id"]), "the shown id")
        watch(sw)
        deliver_until(
            cdp, page, server, reg, push_payload(n), lambda: handled(sw, n["id"]), "the push"
        )
        # A later push that is shown proves the earlier one's handling ended (in order).
        marker = {**push_payload(n), "id": "999999", "title": "marker"}
        deliver_until(
            cdp, page, server, reg, marker, lambda: notifications(page, "999999"), "the marker"
        )
        assert notifications(page, n["id"]) == []
    finally:
        context.close()


def test_service_worker_is_served_as_javascript(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, trust_env=False) as http:
        sw = http.get("/static/notify/notify-sw.js")
        assert sw.status_code == 200
        assert sw.headers["content-type"].split(";")[0] in (
            "text/javascript",
            "application/javascript",
        )
        assert b"notificationclick" in sw.content
        token = make_token("someone")
        assert http.get("/api/v1/push/public-key").status_code == 404  # Web Push off here
        assert (
            http.get(
                "/api/v1/me/push-subscriptions", headers={"Authorization": f"Bearer {token}"}
            ).status_code
            == 404
        )
