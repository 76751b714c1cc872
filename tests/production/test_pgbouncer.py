"""Two production processes whose database connections go through a real
PgBouncer in transaction mode (docs/deploy.md#pgbouncer): migrations, the COPY
path of a batch publish, idempotency across processes, replay and the user API.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.production.conftest import (
    ServerPool,
    Sockets,
    new_user,
    post_notification,
    prod_env,
    stored_notifications,
)
from tests.support.pgbouncer import PgBouncer
from tests.support.servers import PostgresServer, RedisServer

pytestmark = pytest.mark.live

BATCH = 100  # more than one row: the COPY path (notifications/models.py)


@pytest.mark.timeout(180)
async def test_batch_publish_through_pgbouncer_is_copied_delivered_and_replayed(
    pgbouncer: PgBouncer,
    postgres_server: PostgresServer,
    module_redis: RedisServer,
    pool: ServerPool,
    sockets: Sockets,
    http: httpx.AsyncClient,
) -> None:
    name = postgres_server.create_database().rsplit("/", 1)[1]
    a, b = pool.start_many(2, prod_env(pgbouncer.url_for(name), module_redis.url))
    users = [new_user(f"bouncer{i}") for i in range(BATCH)]
    live = [await sockets.open(a if i % 2 else b, users[i]) for i in range(4)]

    key = uuid.uuid4().hex
    first = await post_notification(http, a, users, title="copied", idempotency_key=key)
    assert first.status_code == 202, first.text
    assert first.json()["recipients"] == BATCH
    # The same key on the other process: the first answer, nothing stored twice.
    again = await post_notification(http, b, users, title="copied", idempotency_key=key)
    assert again.status_code == 202, again.text
    assert again.json() == first.json()

    for sock in live:
        [pushed] = await sock.wait_count(1)
        assert pushed["id"] == "1"
        assert pushed["title"] == "copied"
    for user in users[:: BATCH // 10]:
        assert [n["id"] for n in await stored_notifications(http, b, user)] == ["1"]
    resumed = await sockets.open(b, users[-1], query="since=0")
    [replayed] = await resumed.wait_count(1)
    assert replayed["title"] == "copied"

    # Every row is in PostgreSQL, and the processes reached it through PgBouncer.
    with postgres_server.connect(name) as conn:
        rows = conn.execute(
            "SELECT count(*) FROM notify_recipient JOIN notify_event e ON e.id = event_ref "
            "WHERE title = 'copied'"
        ).fetchone()
        assert rows == (BATCH,)
    log = await asyncio.to_thread(pgbouncer.log_text)
    assert f"{name}/" in log, log[-2000:]
