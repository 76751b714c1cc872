"""The Python publisher client (clients/python) against a live server, sync and async.

Faults (a lost answer, 503, 429, a stalled or reset connection) are injected
by a real TCP proxy (tests/clients/proxy.py) between the client and the server.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from notify_client import (
    APIError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    IdempotencyConflictError,
    NotFoundError,
    NotifyError,
    PayloadTooLargeError,
    Presence,
    RateLimitedError,
    ServiceUnavailableError,
    TransportError,
    UnsupportedMediaTypeError,
)

from tests.clients.conftest import SHOP_SECRET, Fault, FaultyProxy, make_token, stored
from tests.live.conftest import new_user, ws_connect
from tests.support.servers import LiveServer, free_port

pytestmark = pytest.mark.live

ProxyFactory = Callable[..., FaultyProxy]
FAST: dict[str, Any] = {"backoff": 0.05, "max_backoff": 0.2, "trust_env": False}


def keys(proxy: FaultyProxy) -> list[str]:
    return [r.headers.get("idempotency-key", "") for r in proxy.requests]


# --------------------------------------------------------------------------- happy paths


def test_publish_and_presence_sync(server: LiveServer) -> None:
    user = new_user()
    with Client(server.url, SHOP_SECRET, trust_env=False) as client:
        event_id = client.publish(
            [user],
            "order.shipped",
            title="Your order is on its way",
            body="Order #1234 left the warehouse.",
            data={"order_id": 1234},
        )
        assert str(uuid.UUID(event_id)) == event_id
        assert client.presence(user) == Presence(user_id=user, online=False, connections=0)
        # A single user id may be given as a plain string.
        client.publish(user, "order.delivered")

    notes = stored(server, user)
    assert [(n["id"], n["type"], n["source"]) for n in notes] == [
        ("1", "order.shipped", "shop"),
        ("2", "order.delivered", "shop"),
    ]
    assert notes[0]["title"] == "Your order is on its way"
    assert notes[0]["body"] == "Order #1234 left the warehouse."
    assert notes[0]["data"] == {"order_id": 1234}


async def test_publish_and_presence_async(server: LiveServer) -> None:
    user, other = new_user(), new_user()
    odd_user = f"team/{uuid.uuid4().hex[:6]} ä?#"  # quoted into the presence path
    async with AsyncClient(server.url, SHOP_SECRET, trust_env=False) as client:
        event_id = await client.publish([user, other, user], "chat.message", title="hi")
        uuid.UUID(event_id)
        ws = await ws_connect(server, token=make_token(user))
        try:
            presence = await client.presence(user)
            assert presence == Presence(user_id=user, online=True, connections=1)
        finally:
            await ws.close()
        odd = await client.presence(odd_user)
        assert (odd.user_id, odd.online, odd.connections) == (odd_user, False, 0)
    assert [n["title"] for n in stored(server, user)] == ["hi"]
    assert [n["title"] for n in stored(server, other)] == ["hi"]


async def test_explicit_idempotency_key_returns_the_first_event(server: LiveServer) -> None:
    user = new_user()
    key = f"order-1234-shipped-{uuid.uuid4()}"
    async with AsyncClient(server.url, SHOP_SECRET, **FAST) as client:
        first = await client.publish([user], "order.shipped", idempotency_key=key)
        again = await client.publish([user], "order.shipped", idempotency_key=key)
        fresh = await client.publish([user], "order.shipped")  # a new key per call
    assert first == again != fresh
    assert len(stored(server, user)) == 2


# --------------------------------------------------------------------------- retries


def test_lost_answer_is_retried_and_stored_once_sync(
    server: LiveServer, proxy_factory: ProxyFactory
) -> None:
    user = new_user()
    proxy = proxy_factory(Fault.drop_response())
    with Client(proxy.url, SHOP_SECRET, **FAST) as client:
        event_id = client.publish([user], "order.shipped", title="once")
    assert len(proxy.requests) == 2
    first_key, retry_key = keys(proxy)
    assert first_key == retry_key and uuid.UUID(first_key)
    notes = stored(server, user)
    assert [n["title"] for n in notes] == ["once"]
    # The retry answered the first request's event.
    with Client(server.url, SHOP_SECRET, trust_env=False) as direct:
        assert direct.publish([user], "order.shipped", title="once", idempotency_key=first_key) == (
            event_id
        )
    assert len(stored(server, user)) == 1


async def test_503_once_is_retried_after_retry_after_async(
    server: LiveServer, proxy_factory: ProxyFactory
) -> None:
    user = new_user()
    proxy = proxy_factory(Fault.answer(503, retry_after="1"))
    async with AsyncClient(proxy.url, SHOP_SECRET, **FAST) as client:
        await client.publish([user], "billing.invoice", title="after 503")
    first, retry = proxy.requests
    assert retry.at - first.at >= 0.95, "Retry-After: 1 was not honoured"
    assert keys(proxy)[0] == keys(proxy)[1]
    assert [n["title"] for n in stored(server, user)] == ["after 503"]


def test_429_is_retried_after_retry_after_sync(
    server: LiveServer, proxy_factory: ProxyFactory
) -> None:
    user = new_user()
    proxy = proxy_factory(Fault.answer(429, retry_after="1"), Fault.answer(503, retry_after="0"))
    with Client(proxy.url, SHOP_SECRET, **FAST) as client:
        client.publish([user], "t", title="after 429")
    assert len(proxy.requests) == 3
    assert proxy.requests[1].at - proxy.requests[0].at >= 0.95
    assert len(set(keys(proxy))) == 1
    assert [n["title"] for n in stored(server, user)] == ["after 429"]


async def test_read_timeout_is_retried_and_stored_once_async(
    server: LiveServer, proxy_factory: ProxyFactory
) -> None:
    user = new_user()
    proxy = proxy_factory(Fault.stall(2.0))
    async with AsyncClient(
        proxy.url,
        SHOP_SECRET,
        timeout=httpx.Timeout(5.0, read=0.5),
        **FAST,
    ) as client:
        await client.publish([user], "t", title="after a timeout")
    assert len(proxy.requests) == 2 and len(set(keys(proxy))) == 1
    assert [n["title"] for n in stored(server, user)] == ["after a timeout"]


def test_reset_connections_are_retried_sync(
    server: LiveServer, proxy_factory: ProxyFactory
) -> None:
    user = new_user()
    proxy = proxy_factory(Fault.reset(), Fault.reset())
    with Client(proxy.url, SHOP_SECRET, **FAST) as client:
        client.publish([user], "t", title="after resets")
        assert client.presence(user).online is False
    assert len(proxy.requests) == 4 and len(set(keys(proxy)[:3])) == 1
    assert [n["title"] for n in stored(server, user)] == ["after resets"]


def test_gives_up_after_max_retries_sync(server: LiveServer, proxy_factory: ProxyFactory) -> None:
    user = new_user()
    proxy = proxy_factory(*[Fault.answer(503, retry_after="0")] * 3)
    with (
        Client(proxy.url, SHOP_SECRET, max_retries=2, **FAST) as client,
        pytest.raises(ServiceUnavailableError) as caught,
    ):
        client.publish([user], "t")
    assert caught.value.status_code == 503
    assert caught.value.retry_after == 0
    assert caught.value.detail == "injected by the test proxy"
    assert len(proxy.requests) == 3

    resets = proxy_factory(*[Fault.reset()] * 2)
    with (
        Client(resets.url, SHOP_SECRET, max_retries=1, **FAST) as client,
        pytest.raises(TransportError) as lost,
    ):
        client.publish([user], "t")
    assert lost.value.attempts == 2
    assert isinstance(lost.value.__cause__, httpx.HTTPError)
    assert stored(server, user) == []


async def test_connection_refused_and_long_retry_after_async(
    proxy_factory: ProxyFactory,
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    async with AsyncClient(nowhere, SHOP_SECRET, max_retries=2, **FAST) as client:
        with pytest.raises(TransportError) as refused:
            await client.presence("alice")
    assert refused.value.attempts == 3
    assert isinstance(refused.value.__cause__, httpx.ConnectError)

    # A Retry-After longer than the client will wait is raised at once.
    proxy = proxy_factory(Fault.answer(429, retry_after="120"))
    async with AsyncClient(proxy.url, SHOP_SECRET, max_retry_after=30, **FAST) as client:
        started = time.monotonic()
        with pytest.raises(RateLimitedError) as limited:
            await client.publish(["alice"], "t")
    # Raised at once: far below the 30 s it would have waited, generous under load.
    assert time.monotonic() - started < 20
    assert limited.value.retry_after == 120 and len(proxy.requests) == 1


# --------------------------------------------------------------------------- typed errors


def test_typed_errors_sync(server: LiveServer) -> None:
    user = new_user()
    with Client(server.url, SHOP_SECRET, **FAST) as client:
        with pytest.raises(BadRequestError) as bad:
            client.publish([], "bad type!")
        assert bad.value.status_code == 400
        assert set(bad.value.body) >= {"recipients", "type"}
        assert isinstance(bad.value, APIError) and isinstance(bad.value, NotifyError)

        with pytest.raises(PayloadTooLargeError) as big:
            client.publish([user], "t", data={"blob": "x" * (6 * 1024 * 1024 + 1)})
        assert big.value.status_code == 413 and big.value.detail

        with pytest.raises(UnsupportedMediaTypeError) as media:
            client.request(
                "POST",
                "/api/v1/notifications",
                content=b"recipients=a&type=t",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        assert media.value.status_code == 415 and media.value.detail

        key = str(uuid.uuid4())
        client.publish([user], "t", title="one", idempotency_key=key)
        with pytest.raises(IdempotencyConflictError) as conflict:
            client.publish([user], "t", title="another", idempotency_key=key)
        assert conflict.value.status_code == 422 and "Idempotency-Key" in str(conflict.value.detail)

        with pytest.raises(NotFoundError):
            client.request("GET", "/api/v1/no-such-endpoint")

    with (
        Client(server.url, "wrong-key", **FAST) as wrong,
        pytest.raises(AuthenticationError) as unauthorized,
    ):
        wrong.publish([user], "t")
    assert unauthorized.value.status_code == 401 and unauthorized.value.detail
    assert unauthorized.value.request_id

    # A user token is not a publisher key.
    with (
        Client(server.url, make_token(user), **FAST) as as_user,
        pytest.raises(AuthenticationError),
    ):
        as_user.presence(user)
    assert [n["title"] for n in stored(server, user)] == ["one"]


async def test_typed_errors_async(server: LiveServer) -> None:
    user = new_user()
    async with AsyncClient(server.url, SHOP_SECRET, **FAST) as client:
        with pytest.raises(BadRequestError) as bad:
            await client.publish([user], "t", title="x" * 201)
        assert "title" in bad.value.body
        with pytest.raises(PayloadTooLargeError):
            await client.publish([user], "t", body="y" * (6 * 1024 * 1024 + 1))
        with pytest.raises(UnsupportedMediaTypeError):
            await client.request(
                "POST",
                "/api/v1/notifications",
                content=b"<x/>",
                headers={"Content-Type": "text/xml"},
            )
    async with AsyncClient(server.url, "nope", **FAST) as wrong:
        with pytest.raises(AuthenticationError) as unauthorized:
            await wrong.publish([user], "t")
    assert unauthorized.value.status_code == 401
    assert stored(server, user) == []


async def test_close_is_idempotent(server: LiveServer) -> None:
    client = Client(server.url, SHOP_SECRET, trust_env=False)
    client.close()
    client.close()
    aclient = AsyncClient(server.url, SHOP_SECRET, trust_env=False)
    await aclient.close()
    await aclient.aclose()
    with pytest.raises(ValueError):
        Client(server.url, "")
    with pytest.raises(ValueError):
        Client(server.url, SHOP_SECRET, max_retries=-1)
