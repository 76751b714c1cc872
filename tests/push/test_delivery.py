"""Web Push end to end: publish -> outbox -> worker -> local push service
(decrypted with the subscription's own keys, VAPID verified)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.push.conftest import (
    PREFERENCES,
    PUBLIC_KEY,
    SUBSCRIPTIONS,
    Deployment,
    Sockets,
    Vapid,
    drained,
    new_user,
    publish,
    subscribe,
    user_headers,
)
from tests.support.push_service import PushService

pytestmark = [pytest.mark.live, pytest.mark.timeout(180)]


async def test_public_key_is_the_configured_one(
    http: httpx.AsyncClient, deployment: Deployment, vapid: Vapid
) -> None:
    response = await http.get(deployment.a.url + PUBLIC_KEY)
    assert response.status_code == 200
    assert response.json() == {"public_key": vapid.public}


async def test_offline_user_gets_an_encrypted_signed_push(
    http: httpx.AsyncClient, deployment: Deployment, push_service: PushService
) -> None:
    user = new_user()
    sub = push_service.subscription()
    await subscribe(http, deployment.a, user, sub)
    await publish(
        http, deployment.b, [user], title="Shipped", body="On its way", data={"url": "/o/1"}
    )
    await push_service.until(lambda: push_service.delivered(sub))
    (received,) = push_service.messages(sub)
    stored = (
        await http.get(deployment.a.url + "/api/v1/me/notifications", headers=user_headers(user))
    ).json()["results"][0]
    assert received.payload == {
        key: stored[key] for key in ("id", "type", "title", "body", "data", "created_at")
    }
    assert received.claims is not None and received.claims["aud"] == push_service.origin
    assert received.claims["sub"] == "mailto:ops@notify.test"
    assert 0 < int(received.headers["TTL"]) <= 86400
    assert received.headers["Urgency"] == "normal"
    assert 1 <= len(received.headers["Topic"]) <= 32
    await drained(deployment.outbox, user)


async def test_auto_skips_a_user_connected_to_another_process_always_does_not(
    http: httpx.AsyncClient, deployment: Deployment, push_service: PushService, sockets: Sockets
) -> None:
    user = new_user()
    sub = push_service.subscription()
    await subscribe(http, deployment.a, user, sub)
    socket = await sockets.open(deployment.b, user)  # connected on B only
    auto = await publish(http, deployment.a, [user], title="auto")
    await socket.wait_for(lambda s: any(f.get("type") == "notification" for f in s.frames))
    await drained(deployment.outbox, user)  # the row was resolved: nothing owed
    assert push_service.messages(sub) == []
    await publish(http, deployment.a, [user], title="always", push="always")
    await push_service.until(lambda: push_service.delivered(sub))
    await drained(deployment.outbox, user)
    assert [p["title"] for p in push_service.delivered(sub)] == ["always"]
    assert auto["recipients"] == 1


async def test_never_sends_nothing_and_offline_auto_sends(
    http: httpx.AsyncClient, deployment: Deployment, push_service: PushService
) -> None:
    user = new_user()
    sub = push_service.subscription()
    await subscribe(http, deployment.a, user, sub)
    await publish(http, deployment.a, [user], title="never", push="never")
    await publish(http, deployment.a, [user], title="auto")
    await push_service.until(lambda: push_service.delivered(sub))
    await drained(deployment.outbox, user)
    assert [p["title"] for p in push_service.delivered(sub)] == ["auto"]


async def test_each_subscription_of_the_user_gets_one(
    http: httpx.AsyncClient, deployment: Deployment, push_service: PushService
) -> None:
    user, other = new_user(), new_user()
    mine = [push_service.subscription(), push_service.subscription()]
    theirs = push_service.subscription()
    for sub in mine:
        await subscribe(http, deployment.a, user, sub)
    await subscribe(http, deployment.a, other, theirs)
    await publish(http, deployment.b, [user], title="mine")
    await push_service.until(lambda: all(push_service.delivered(s) for s in mine))
    await drained(deployment.outbox, user)
    assert push_service.messages(theirs) == []


async def test_too_big_notification_is_truncated_to_fit(
    http: httpx.AsyncClient, deployment: Deployment, push_service: PushService
) -> None:
    user = new_user()
    sub = push_service.subscription()
    await subscribe(http, deployment.a, user, sub)
    body = "ü€" * 1000  # 2000 characters, 5000 bytes of UTF-8
    await publish(http, deployment.a, [user], title="big", body=body, data={"blob": "x" * 60000})
    await push_service.until(lambda: push_service.delivered(sub))
    (received,) = push_service.messages(sub)
    payload = received.payload
    assert payload is not None
    assert received.body_length <= 4096
    assert payload["truncated"] is True and payload["data"] == {}
    assert payload["title"] == "big"
    assert 0 < len(payload["body"]) < len(body) and body.startswith(payload["body"][:-1])
    assert received.body_length > 3500  # shortened only as much as needed


async def test_429_and_500_are_retried_until_201(
    http: httpx.AsyncClient, deployment: Deployment, push_service: PushService
) -> None:
    user = new_user()
    sub = push_service.subscription()
    await subscribe(http, deployment.a, user, sub)
    push_service.answer(sub, 500)
    push_service.answer(sub, 429, retry_after="1")
    await publish(http, deployment.a, [user], title="retried")
    await push_service.until(lambda: push_service.delivered(sub), timeout=60)
    await drained(deployment.outbox, user)
    statuses = [r.status for r in push_service.messages(sub)]
    assert statuses == [500, 429, 201]
    first, second, third = push_service.messages(sub)
    assert third.at - second.at >= 0.9  # Retry-After: 1 was honoured
    assert {r.payload["id"] for r in (first, second, third) if r.payload} == {
        push_service.delivered(sub)[0]["id"]
    }


async def test_410_deletes_the_subscription_400_keeps_it(
    http: httpx.AsyncClient, deployment: Deployment, push_service: PushService
) -> None:
    user = new_user()
    gone, refused = push_service.subscription(), push_service.subscription()
    await subscribe(http, deployment.a, user, gone)
    kept = await subscribe(http, deployment.a, user, refused)
    push_service.answer(gone, 410)
    push_service.answer(refused, 400)
    await publish(http, deployment.a, [user])
    await drained(deployment.outbox, user)
    assert [r.status for r in push_service.messages(gone)] == [410]
    assert [r.status for r in push_service.messages(refused)] == [400]  # not retried
    listed = (await http.get(deployment.a.url + SUBSCRIPTIONS, headers=user_headers(user))).json()
    assert [s["id"] for s in listed["results"]] == [kept["id"]]


async def test_a_redirect_is_not_followed(
    http: httpx.AsyncClient, deployment: Deployment, push_service: PushService
) -> None:
    """A redirect could point anywhere (SSRF): it is an answer like any
    other 3xx, logged and dropped, and nothing is sent to its Location."""
    user = new_user()
    sub, elsewhere = push_service.subscription(), push_service.subscription()
    await subscribe(http, deployment.a, user, sub)
    push_service.answer(sub, 307, location=elsewhere.endpoint)
    await publish(http, deployment.a, [user])
    await drained(deployment.outbox, user)
    assert [r.status for r in push_service.messages(sub)] == [307]  # not retried
    assert push_service.messages(elsewhere) == []


async def test_muted_types_get_no_push_but_stay_in_the_feed(
    http: httpx.AsyncClient, deployment: Deployment, push_service: PushService
) -> None:
    user = new_user()
    sub = push_service.subscription()
    await subscribe(http, deployment.a, user, sub)
    response = await http.put(
        deployment.a.url + PREFERENCES,
        content=json.dumps({"push": {"muted_types": ["marketing.*", "chat.typing"]}}),
        headers={**user_headers(user), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    for kind in ("marketing", "marketing.promo.spring", "chat.typing", "order.shipped"):
        await publish(http, deployment.a, [user], type=kind)
    await push_service.until(lambda: push_service.delivered(sub))
    await drained(deployment.outbox, user)
    assert [p["type"] for p in push_service.delivered(sub)] == ["order.shipped"]
    feed = (
        await http.get(deployment.a.url + "/api/v1/me/notifications", headers=user_headers(user))
    ).json()["results"]
    assert len(feed) == 4


async def test_a_subscription_moves_to_the_user_who_registers_it(
    http: httpx.AsyncClient, deployment: Deployment, push_service: PushService
) -> None:
    first, second = new_user(), new_user()
    sub = push_service.subscription()
    one = await subscribe(http, deployment.a, first, sub)
    two = await subscribe(http, deployment.a, second, sub)
    assert one["id"] == two["id"]
    await publish(http, deployment.a, [first], title="to first")
    await publish(http, deployment.a, [second], title="to second")
    await push_service.until(lambda: push_service.delivered(sub))
    await asyncio.gather(drained(deployment.outbox, first), drained(deployment.outbox, second))
    assert [p["title"] for p in push_service.delivered(sub)] == ["to second"]


def _retries(metrics_text: str) -> float:
    prefix = 'notify_push_sent_total{result="retry"} '
    lines = [line for line in metrics_text.splitlines() if line.startswith(prefix)]
    return float(lines[0][len(prefix) :]) if lines else 0.0


async def test_a_connection_the_push_service_closed_is_replaced_not_failed(
    http: httpx.AsyncClient, deployment: Deployment, push_service: PushService
) -> None:
    """The sender pools connections per push service; one the service closed
    while idle must be noticed and replaced, not used for the next push
    (which would fail and wait for a retry)."""
    user = new_user()
    sub = push_service.subscription()
    await subscribe(http, deployment.a, user, sub)
    await publish(http, deployment.a, [user], title="first")
    await push_service.until(lambda: len(push_service.delivered(sub)) == 1)
    await drained(deployment.outbox, user)
    servers = (deployment.a, deployment.b)
    before = [_retries((await http.get(s.url + "/metrics")).text) for s in servers]
    assert await asyncio.to_thread(push_service.drop_connections) >= 1

    await publish(http, deployment.a, [user], title="second")
    await push_service.until(lambda: len(push_service.delivered(sub)) == 2)
    await drained(deployment.outbox, user)
    assert [m.status for m in push_service.messages(sub)] == [201, 201]
    after = [_retries((await http.get(s.url + "/metrics")).text) for s in servers]
    assert after == before, "a push went out on a dead connection and was retried"
