"""Web Push tests against real parts: uvicorn processes on PostgreSQL and
Redis, and a local push service over HTTPS with a private CA
(tests/support/push_service.py) that decrypts and checks every message.
Nothing reaches the internet.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.live.conftest import (  # noqa: F401 (fixtures and helpers for the tests)
    PUBLISH_PATH,
    Sockets,
    make_token,
    publisher_headers,
    server_env,
    server_logs,
    sockets,
    start_server,
    stop_server,
    user_headers,
)
from tests.live.conftest import http as http  # the fixture, re-exported
from tests.support.push_service import PushService, Subscription, b64url
from tests.support.servers import LiveServer, PostgresServer, RedisServer

SUBJECT = "mailto:ops@notify.test"
SUBSCRIPTIONS = "/api/v1/me/push-subscriptions"
PREFERENCES = "/api/v1/me/preferences"
PUBLIC_KEY = "/api/v1/push/public-key"


class Vapid:
    def __init__(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        self.private = b64url(key.private_numbers().private_value.to_bytes(32, "big"))
        self.public = b64url(
            key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )


@pytest.fixture(scope="package")
def vapid() -> Vapid:
    return Vapid()


@pytest.fixture(scope="package")
def push_service(vapid: Vapid) -> Iterator[PushService]:
    service = PushService(vapid.public, subject=SUBJECT)
    yield service
    service.close()


@pytest.fixture(autouse=True)
def no_push_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every message the push service got in a test decrypted and carried valid VAPID."""
    service: PushService | None = None
    if "push_service" in request.fixturenames:
        service = request.getfixturevalue("push_service")
    before = len(service.errors()) if service else 0
    yield
    if service is not None:
        assert service.errors()[before:] == []


def push_env(vapid: Vapid, service: PushService, **extra: str) -> dict[str, str]:
    return {
        "VAPID_PRIVATE_KEY": vapid.private,
        "VAPID_SUBJECT": SUBJECT,
        "NOTIFY_PUSH_ALLOWED_HOSTS": service.host,
        "NOTIFY_PUSH_CA_BUNDLE": str(service.ca.ca_path),
        **extra,
    }


class Outbox:
    """The outbox table, read straight from the database."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def rows(self, user: str, *, attempts: int | None = None) -> int:
        query = "SELECT count(*) FROM notify_push_outbox WHERE user_id = %s"
        params: list[Any] = [user]
        if attempts is not None:
            query += " AND attempts = %s"
            params.append(attempts)
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(query, params).fetchone()
        assert row is not None
        return int(row[0])


class Deployment:
    """Two service processes (A, B) on one PostgreSQL database and one Redis."""

    def __init__(self, database_url: str, env: dict[str, str]) -> None:
        self.outbox = Outbox(database_url)
        self.env = env
        self.a = start_server(env)
        self.b = start_server(env, migrate=False)

    def close(self) -> None:
        stop_server(self.b)
        stop_server(self.a)


@pytest.fixture(scope="package")
def deployment(
    redis_server: RedisServer,
    postgres_server: PostgresServer,
    vapid: Vapid,
    push_service: PushService,
) -> Iterator[Deployment]:
    database_url = postgres_server.create_database()
    prefix = f"pushtest{uuid.uuid4().hex[:8]}"
    env = server_env(
        database_url, redis_server.url, NOTIFY_REDIS_PREFIX=prefix, **push_env(vapid, push_service)
    )
    dep = Deployment(database_url, env)
    yield dep
    dep.close()


def new_user() -> str:
    return f"p-{uuid.uuid4().hex[:12]}"


async def subscribe(
    client: httpx.AsyncClient, server: LiveServer, user: str, sub: Subscription
) -> dict[str, Any]:
    response = await client.post(
        server.url + SUBSCRIPTIONS,
        content=json.dumps(sub.to_json()),
        headers={**user_headers(user), "Content-Type": "application/json"},
    )
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def publish(
    client: httpx.AsyncClient, server: LiveServer, users: list[str], **fields: Any
) -> dict[str, Any]:
    payload = {"recipients": users, "type": "order.shipped", "title": "t", **fields}
    response = await client.post(
        server.url + PUBLISH_PATH, content=json.dumps(payload), headers=publisher_headers()
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def drained(outbox: Outbox, user: str, timeout: float = 30.0) -> None:
    """Until the outbox owes ``user`` nothing (every row settled)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await asyncio.to_thread(outbox.rows, user):
        assert loop.time() < deadline, f"outbox still owes {user} pushes after {timeout}s"
        await asyncio.sleep(0.05)
