"""Retention: ``purge_notifications`` under traffic, and resuming across the purge.

Contract: ``NOTIFY_RETENTION_DAYS`` is "how long notifications are kept before a
purge removes them" (default 30); a ``ready`` frame's ``complete`` "is false when
``since`` is older than what is still stored, so the client should refetch over
the user API". The purge runs (as a CronJob would) while publishing goes on.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import httpx
import pytest

from tests.production.conftest import (
    ServerPool,
    Sockets,
    new_user,
    pg_connect,
    post_notification,
    prod_env,
    publish,
    stored_notifications,
)
from tests.support.servers import LiveServer, PostgresServer, RedisServer

pytestmark = pytest.mark.live

BULK_USERS = 3000


@pytest.fixture(scope="module")
def pair(module_pool: ServerPool, module_redis: RedisServer, module_db: str) -> list[LiveServer]:
    return module_pool.start_many(2, prod_env(module_db, module_redis.url))


def age(postgres_server: PostgresServer, database_url: str, where: str, *args: object) -> int:
    with pg_connect(postgres_server, database_url) as conn:
        # The recipient rows, then their events: a row is kept under its
        # event's UTC day (the compact layout: the user id through the key).
        events = conn.execute(
            "UPDATE notify_recipient r "
            "SET day = ((now() - interval '40 days') AT TIME ZONE 'UTC')::date "
            "FROM notify_event e, notify_user_sequence s "
            f"WHERE e.id = r.event_ref AND s.key = r.user_key AND {where} RETURNING r.event_ref",
            args,
        ).fetchall()
        conn.execute(
            "UPDATE notify_event SET created_at = now() - interval '40 days' WHERE id = ANY(%s)",
            ([ref for (ref,) in events],),
        )
        return len(events)


@pytest.mark.timeout(180)
async def test_purge_under_traffic_removes_old_rows_only_and_resume_reports_completeness(
    pair: list[LiveServer],
    module_db: str,
    postgres_server: PostgresServer,
    sockets: Sockets,
    http: httpx.AsyncClient,
) -> None:
    a, b = pair
    xavier, yuki, zoe = new_user("xavier"), new_user("yuki"), new_user("zoe")
    for i in range(5):
        await publish(http, a, [xavier], title=f"x-{i + 1}")
    for i in range(3):
        await publish(http, b, [yuki], title=f"y-{i + 1}")
    for i in range(2):
        await publish(http, a, [zoe], title=f"z-{i + 1}")
    # Plenty of old rows, so that the purge takes several batches.
    bulk = [new_user("bulk") for _ in range(BULK_USERS)]
    await publish(http, b, bulk, title="old bulk")

    assert age(postgres_server, module_db, "user_id = %s AND seq <= 3", xavier) == 3
    assert age(postgres_server, module_db, "user_id = %s", yuki) == 3
    assert age(postgres_server, module_db, "title = 'old bulk'") == BULK_USERS

    # Publishing goes on, through both processes, while the purge runs.
    accepted: Counter[str] = Counter({xavier: 5, zoe: 2})
    stop = asyncio.Event()
    statuses: list[int] = []

    async def keep_publishing() -> None:
        rng = random.Random(3)
        i = 0
        while not stop.is_set() or i < 20:
            recipients = rng.sample([xavier, zoe], rng.randint(1, 2))
            response = await post_notification(
                http, pair[i % 2], recipients, title=f"during-{i}", data={"i": i}
            )
            statuses.append(response.status_code)
            if response.status_code == 202:
                accepted.update(recipients)
            i += 1

    publisher = asyncio.create_task(keep_publishing())
    try:
        await asyncio.to_thread(a.run_manage, "purge_notifications", "--batch-size", "250")
    finally:
        stop.set()
        await publisher
    assert statuses == [202] * len(statuses), Counter(statuses)
    assert "purged 3006 notifications older than 30 days" in a.log_text()

    # The aged rows are gone, and nothing else.
    with pg_connect(postgres_server, module_db) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM notify_recipient WHERE day < "
            "((now() - interval '30 days') AT TIME ZONE 'UTC')::date) + "
            "(SELECT count(*) FROM notify_event WHERE created_at < now() - "
            "interval '30 days')"
        ).fetchone()
        assert row == (0,)  # neither the rows nor their events
        purged = dict(
            conn.execute(
                "SELECT user_id, purged_through FROM notify_user_sequence WHERE user_id = ANY(%s)",
                [[xavier, yuki, zoe]],
            ).fetchall()
        )
    assert purged == {xavier: 3, yuki: 3, zoe: 0}

    x_stored = await stored_notifications(http, b, xavier)
    assert [int(n["id"]) for n in x_stored] == list(range(4, accepted[xavier] + 1))
    assert [n["title"] for n in x_stored[:2]] == ["x-4", "x-5"]
    assert await stored_notifications(http, a, yuki) == []
    z_stored = await stored_notifications(http, b, zoe)
    assert [int(n["id"]) for n in z_stored] == list(range(1, accepted[zoe] + 1))
    assert len(await stored_notifications(http, a, bulk[0])) == 0

    # Resuming from below what was purged: the replay cannot be complete.
    below = await sockets.open(a, xavier, query="since=1")
    ready = below.of_type("ready")[0]
    assert ready["complete"] is False, ready
    assert below.notifications() == x_stored  # what is still there, oldest first

    # From the purge boundary or later: complete.
    for since in (3, 4, accepted[xavier]):
        sock = await sockets.open(b, xavier, query=f"since={since}")
        ready = sock.of_type("ready")[0]
        assert ready["complete"] is True, (since, ready)
        assert sock.ids() == list(range(since + 1, accepted[xavier] + 1))

    y_old = await sockets.open(b, yuki, query="since=0")
    assert y_old.of_type("ready")[0]["complete"] is False
    assert y_old.notifications() == []
    y_now = await sockets.open(a, yuki, query="since=3")
    assert y_now.of_type("ready")[0]["complete"] is True

    z_sock = await sockets.open(a, zoe, query="since=0")
    assert z_sock.of_type("ready")[0]["complete"] is True
    assert z_sock.notifications() == z_stored
