"""PostgreSQL goes away under a live server, then comes back.

Contract: a publish the service cannot store is answered ``503`` with
``Retry-After`` and a ``{"detail": ...}`` body, and stores nothing; ``/readyz``
answers 503 while the database does not answer, and 200 again once it does.
Nothing here is patched: a real PostgreSQL cluster is stopped under a real
uvicorn process and started again.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator

import httpx
import pytest

from tests.production.conftest import (
    LogGuard,
    ServerPool,
    eventually,
    post_notification,
    prod_env,
    readyz,
    stored_notifications,
)
from tests.support.servers import PostgresServer, RedisServer

pytestmark = pytest.mark.live


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A cluster of this test's own, free to stop and start (test-only speed settings)."""
    with PostgresServer(durable=False) as server:
        yield server


def stored_titles(postgres: PostgresServer, title_prefix: str) -> list[str]:
    """Titles stored in the database itself (not through the service)."""
    with postgres.connect() as conn:
        rows = conn.execute(
            "SELECT title FROM notify_recipient r JOIN notify_event e ON e.id = r.event_ref "
            "WHERE title LIKE %s ORDER BY e.id",
            (title_prefix + "%",),
        ).fetchall()
    return [str(row[0]) for row in rows]


@pytest.mark.timeout(240)
async def test_publish_is_503_with_retry_after_while_postgres_is_down_and_recovers(
    own_postgres: PostgresServer,
    fresh_redis_server: RedisServer,
    pool: ServerPool,
    http: httpx.AsyncClient,
    log_guard: LogGuard,
) -> None:
    # The outage is expected to be logged (connection refused): not a test failure.
    log_guard.allow(r"(?i)connection|database|operational|psycopg|pool|refused|terminat")
    log_guard.allow(r'"(GET /readyz|POST /api/v1/notifications) HTTP/1.1" 503')
    server = pool.start(prod_env(own_postgres.url, fresh_redis_server.url))
    user = f"pgout-{random.getrandbits(32):08x}"
    marker = f"pgout-{random.getrandbits(32):08x}"

    before = await post_notification(http, server, [user], title=f"{marker}-before")
    assert before.status_code == 202, before.text
    assert (await readyz(http, server))[0] == 200

    own_postgres.stop()

    _status, body = await eventually(
        functools.partial(readyz, http, server),
        lambda answer: answer[0] == 503,
        what="/readyz to turn 503 with PostgreSQL stopped",
    )
    assert body["database"] != "ok", body
    for attempt in range(3):
        refused = await post_notification(http, server, [user], title=f"{marker}-during-{attempt}")
        assert refused.status_code == 503, refused.text
        assert set(refused.json()) == {"detail"}, refused.text
        assert int(refused.headers["Retry-After"]) >= 1, refused.headers

    own_postgres.start()

    await eventually(
        functools.partial(readyz, http, server),
        lambda answer: answer[0] == 200,
        timeout=60,
        what="/readyz back to 200 with PostgreSQL back",
    )
    after = await post_notification(http, server, [user], title=f"{marker}-after")
    assert after.status_code == 202, after.text

    # The refused publishes stored nothing: neither in the table nor for the user.
    assert stored_titles(own_postgres, marker) == [f"{marker}-before", f"{marker}-after"]
    frames = await stored_notifications(http, server, user)
    assert [f["title"] for f in frames] == [f"{marker}-before", f"{marker}-after"]
