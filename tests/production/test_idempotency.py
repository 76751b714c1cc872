"""Idempotency-Key across processes.

Contract: "The same Idempotency-Key with the same body from the same publisher
within 24 h returns the first answer and stores nothing new, whichever process
receives it; two such requests at once store one event (the second answers the
first's 202, or 409 while the first is in flight). Keys of different publishers
never collide." and 422 for "Idempotency-Key reused with a different body".
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from tests.production.conftest import (
    OTHER_SECRET,
    SHOP_SECRET,
    ServerPool,
    Sockets,
    new_user,
    post_notification,
    prod_env,
    stored_notifications,
)
from tests.support.servers import LiveServer, RedisServer

pytestmark = pytest.mark.live

CONCURRENT = 10


@pytest.fixture(scope="module")
def trio(module_pool: ServerPool, module_redis: RedisServer, module_db: str) -> list[LiveServer]:
    env = prod_env(
        module_db, module_redis.url, NOTIFY_API_KEYS=f"shop:{SHOP_SECRET},other:{OTHER_SECRET}"
    )
    return module_pool.start_many(3, env)


async def test_same_key_and_body_at_once_on_three_processes_store_one_event(
    trio: list[LiveServer], sockets: Sockets, http: httpx.AsyncClient
) -> None:
    alice, bob = new_user("alice"), new_user("bob")
    alice_socks = [await sockets.open(server, alice) for server in trio]
    bob_sock = await sockets.open(trio[1], bob)
    key = f"order-{uuid.uuid4()}"
    fields: dict[str, Any] = {"title": "Your order shipped", "data": {"order": 1234}}

    responses = await asyncio.gather(
        *(
            post_notification(
                http, trio[i % len(trio)], [alice, bob], idempotency_key=key, **fields
            )
            for i in range(CONCURRENT)
        )
    )
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {202, 409}, [(r.status_code, r.text) for r in responses]
    accepted = [r.json() for r in responses if r.status_code == 202]
    assert accepted, statuses
    assert len({a["event_id"] for a in accepted}) == 1, accepted
    assert all(a["recipients"] == 2 for a in accepted)
    for response in responses:
        if response.status_code == 409:
            assert "detail" in response.json()
    print(f"statuses of {CONCURRENT} concurrent duplicates: {sorted(statuses)}")

    # A later retry, on any process, replays the first answer.
    for server in trio:
        again = await post_notification(http, server, [alice, bob], idempotency_key=key, **fields)
        assert again.status_code == 202, again.text
        assert again.json() == accepted[0]

    # Exactly one notification per recipient, stored and pushed.
    for user in (alice, bob):
        stored = await stored_notifications(http, trio[2], user)
        assert [(n["id"], n["title"]) for n in stored] == [("1", "Your order shipped")], stored
    for sock in [*alice_socks, bob_sock]:
        await sock.wait_count(1)
        await sock.ping()
        assert sock.ids() == [1], sock.label


async def test_the_same_key_from_two_publishers_stores_two_events(
    trio: list[LiveServer], sockets: Sockets, http: httpx.AsyncClient
) -> None:
    user = new_user("carol")
    sock = await sockets.open(trio[0], user)
    key = f"shared-{uuid.uuid4()}"
    shop, other = await asyncio.gather(
        post_notification(http, trio[1], [user], idempotency_key=key, title="same"),
        post_notification(
            http, trio[2], [user], idempotency_key=key, title="same", secret=OTHER_SECRET
        ),
    )
    assert shop.status_code == 202, shop.text
    assert other.status_code == 202, other.text
    assert shop.json()["event_id"] != other.json()["event_id"]

    stored = await stored_notifications(http, trio[0], user)
    assert sorted(n["source"] for n in stored) == ["other", "shop"]
    assert [n["id"] for n in stored] == ["1", "2"]
    await sock.wait_count(2)
    await sock.ping()
    assert sock.ids() == [1, 2]

    # Each publisher's retry replays its own answer and stores nothing.
    again = await post_notification(
        http, trio[0], [user], idempotency_key=key, title="same", secret=OTHER_SECRET
    )
    assert again.status_code == 202 and again.json() == other.json()
    assert len(await stored_notifications(http, trio[1], user)) == 2


async def test_the_same_key_with_another_body_is_refused_with_422(
    trio: list[LiveServer], http: httpx.AsyncClient
) -> None:
    user = new_user("dave")
    key = f"k-{uuid.uuid4()}"
    first = await post_notification(http, trio[0], [user], idempotency_key=key, title="first")
    assert first.status_code == 202, first.text

    for server in trio:
        changed = await post_notification(
            http, server, [user], idempotency_key=key, title="changed"
        )
        assert changed.status_code == 422, changed.text
        assert isinstance(changed.json()["detail"], str)
        other_recipients = await post_notification(
            http, server, [user, new_user("eve")], idempotency_key=key, title="first"
        )
        assert other_recipients.status_code == 422, other_recipients.text

    stored = await stored_notifications(http, trio[2], user)
    assert [n["title"] for n in stored] == ["first"]
