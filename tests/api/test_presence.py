"""GET /api/v1/users/{user_id}/presence (publisher auth)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from notifications import presence
from tests.api.conftest import presence_url
from tests.support.asgi import AsgiClient

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def memory_presence() -> Iterator[presence.MemoryPresence]:
    backend = presence.backend()
    if not isinstance(backend, presence.MemoryPresence):
        pytest.skip("presence is backed by Redis in this environment")
    before = dict(backend.counts)
    yield backend
    backend.counts.clear()
    backend.counts.update(before)


def test_offline_user(publisher_client: AsgiClient) -> None:
    response = publisher_client.get(presence_url("42"))
    assert response.status_code == 200, response.content
    assert response.json() == {"user_id": "42", "online": False, "connections": 0}


@pytest.mark.parametrize(
    "user_id",
    [
        pytest.param("user with spaces", id="spaces"),
        pytest.param("é-ü-😀", id="unicode"),
        pytest.param("a/b", id="slash"),
        pytest.param("what?x=1#frag", id="query-and-fragment-chars"),
        pytest.param("org:42:user", id="colons"),
        pytest.param("%41", id="percent-literal"),
        pytest.param("..", id="dot-dot"),
        pytest.param("u" * 128, id="128-chars"),
    ],
)
def test_user_id_with_odd_characters(publisher_client: AsgiClient, user_id: str) -> None:
    response = publisher_client.get(presence_url(user_id))
    assert response.status_code == 200, response.content
    assert response.json() == {"user_id": user_id, "online": False, "connections": 0}


def test_connected_sockets_are_counted(
    publisher_client: AsgiClient, memory_presence: presence.MemoryPresence
) -> None:
    async_to_sync(memory_presence.connected)("a/b é", "chan-1")
    async_to_sync(memory_presence.connected)("a/b é", "chan-2")
    async_to_sync(memory_presence.connected)("other", "chan-3")

    response = publisher_client.get(presence_url("a/b é"))
    assert response.json() == {"user_id": "a/b é", "online": True, "connections": 2}

    async_to_sync(memory_presence.disconnected)("a/b é", "chan-1")
    async_to_sync(memory_presence.disconnected)("a/b é", "chan-2")
    response = publisher_client.get(presence_url("a/b é"))
    assert response.json() == {"user_id": "a/b é", "online": False, "connections": 0}


def test_billing_key_works_too(billing_client: AsgiClient) -> None:
    assert billing_client.get(presence_url("42")).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-key", "Basic Zm9vOmJhcg=="],
    ids=["no-header", "wrong-key", "basic"],
)
def test_presence_needs_a_publisher_key(client_factory: Any, authorization: str | None) -> None:
    client = client_factory()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    response = client.get(presence_url("42"))
    assert response.status_code == 401
    assert set(response.json()) == {"detail"}
