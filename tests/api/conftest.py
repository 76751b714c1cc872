"""Fixtures for the HTTP API tests: known publisher keys, a known JWT secret, clients.

Settings are overridden per test through pytest-django's ``settings`` fixture, so
nothing leaks between tests. Every client sends its requests through
``service.asgi.application`` (tests/support/asgi.py), so the publish takes
the path production runs: the group committer's writer thread, with the rate
limit inside it; database tests here are therefore transactional. Tokens are
minted with PyJWT directly (not with the service's own helper), so the tests
check the service against the JWT standard.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from notifications import publish_loop
from notifications.models import IdempotencyRecord, UserSequence
from notifications.ratelimit import publisher_limiter
from service.asgi import application
from tests.support import rows as stored_rows
from tests.support.asgi import AsgiClient, serving_loop
from tests.support.keys import api_keys_setting, api_keys_spec
from tests.support.tokens import hs256_only, user_token

SHOP_SECRET = "shop-test-publisher-secret-4f1c2a9e8b7d6c5e4f3a2b1c0d9e8f7a"
BILLING_SECRET = "billing-test-publisher-secret-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
API_KEYS = {"shop": SHOP_SECRET, "billing": BILLING_SECRET}
JWT_SECRET = "test-jwt-secret-that-is-long-enough-for-hs512-too-0123456789abcdef"
OTHER_JWT_SECRET = "another-jwt-secret-nobody-configured-long-enough-0123456789abcdef"

PUBLISH_URL = "/api/v1/notifications"
ME_URL = "/api/v1/me/notifications"
UNREAD_URL = "/api/v1/me/notifications/unread-count"
READ_URL = "/api/v1/me/notifications/read"


def presence_url(user_id: str) -> str:
    from urllib.parse import quote

    # Dots too: an HTTP client would resolve a ".." segment before sending it.
    return f"/api/v1/users/{quote(user_id, safe='').replace('.', '%2E')}/presence"


def make_token(sub: Any = "alice", *, secret: str = JWT_SECRET, **options: Any) -> str:
    """A user JWT (tests.support.tokens.user_token's options) signed with ``secret``."""
    return user_token(secret, sub, **options)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unsigned_token(sub: str = "alice", exp_in: int = 3600) -> str:
    """An ``alg: none`` token, built by hand: header.payload. with no signature."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps({"sub": sub, "exp": int(time.time()) + exp_in}).encode())
    return f"{header}.{payload}."


def counts() -> tuple[int, int, int]:
    """(notifications, user sequences, idempotency records) stored right now."""
    return (
        stored_rows.count(),
        UserSequence.objects.count(),
        IdempotencyRecord.objects.count(),
    )


def sequences() -> dict[str, int]:
    return dict(UserSequence.objects.values_list("user_id", "last_id"))


@pytest.fixture(autouse=True)
def api_settings(settings: Any) -> Any:
    settings.NOTIFY_API_KEYS = api_keys_setting(api_keys_spec(API_KEYS))
    settings.NOTIFY_JWT = hs256_only(settings.NOTIFY_JWT, JWT_SECRET)
    settings.NOTIFY_PUBLISH_RATE = (1000.0, 2000.0)
    settings.NOTIFY_MAX_BODY_BYTES = 1024 * 1024  # not the default (6 MiB): bodies stay small
    return settings


@pytest.fixture(autouse=True)
def reset_rate_limiter() -> Iterator[None]:
    """The limiter keeps per-publisher buckets at module level; start each test empty."""
    publisher_limiter._local.clear()
    yield
    publisher_limiter._local.clear()


@pytest.fixture
def asgi_loop() -> Iterator[asyncio.AbstractEventLoop]:
    yield from serving_loop()


@pytest.fixture
def client_factory(asgi_loop: asyncio.AbstractEventLoop) -> Callable[[str | None], AsgiClient]:
    """``client_factory("Bearer ...")``: a client of ``service.asgi.application``."""

    def make(authorization: str | None = None) -> AsgiClient:
        client = AsgiClient(asgi_loop)
        client.credentials(HTTP_AUTHORIZATION=authorization)
        return client

    return make


@pytest.fixture
def anon_client(client_factory: Callable[[str | None], AsgiClient]) -> AsgiClient:
    return client_factory(None)


@pytest.fixture
def publisher_client(client_factory: Callable[[str | None], AsgiClient]) -> AsgiClient:
    return client_factory(f"Bearer {SHOP_SECRET}")


@pytest.fixture
def billing_client(client_factory: Callable[[str | None], AsgiClient]) -> AsgiClient:
    return client_factory(f"Bearer {BILLING_SECRET}")


@pytest.fixture
def user_client(client_factory: Callable[[str | None], AsgiClient]) -> Callable[[str], AsgiClient]:
    """``user_client("alice")``: a client holding a fresh valid token for that user."""

    def make(user_id: str) -> AsgiClient:
        return client_factory(f"Bearer {make_token(user_id)}")

    return make


@pytest.fixture
def publish(publisher_client: AsgiClient) -> Callable[..., Any]:
    """POST a JSON body as the ``shop`` publisher; returns the response."""

    def do(body: Any, **headers: str) -> Any:
        return publisher_client.post(PUBLISH_URL, body, format="json", headers=headers or None)

    return do


@pytest.fixture
async def asgi() -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of ``service.asgi.application`` on the test's loop."""
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client
    await publish_loop.close()  # the ASGI shutdown's: this test's loop closes next
