"""SIGTERM while a plain publish group commits on the event loop (PostgreSQL).

uvicorn waits for requests in flight up to ``--timeout-graceful-shutdown``
(the image's: 10 s) and then cancels them; a group committing on the loop is
a task of its own, which the ASGI shutdown waits for before it closes the
loop's connections (notifications/publish_loop.py, ``close``). Here the
group's statement waits on a row lock past uvicorn's timeout: the process
must not exit, nor close the connection under it, before it commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections.abc import Callable

import httpx
import pytest

from tests.production.conftest import (
    LogGuard,
    ServerPool,
    pg_connect,
    post_notification,
    prod_env,
)
from tests.support.servers import PostgresServer, RedisServer

pytestmark = pytest.mark.live

WAITING = "shutdown: waiting for the publish groups in flight on this loop"


async def eventually(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {what}") from None


@pytest.mark.timeout(180)
async def test_sigterm_waits_for_the_group_committing_on_the_loop(
    pool: ServerPool,
    module_redis: RedisServer,
    module_db: str,
    postgres_server: PostgresServer,
    http: httpx.AsyncClient,
    log_guard: LogGuard,
) -> None:
    # uvicorn's own line when it cancels the request past its timeout.
    # uvicorn's own lines when it cancels the request past its timeout (its
    # CancelledError logged, a 500 for a client that is still there).
    log_guard.allow(r"Cancel \d+ running task\(s\), timeout graceful shutdown exceeded")
    log_guard.allow(r"Exception in ASGI application")
    log_guard.allow(r'"POST /api/v1/notifications HTTP/1.1" 500')
    server = pool.start(
        prod_env(module_db, module_redis.url, UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN="1")
    )
    gate, other = f"gate-{uuid.uuid4().hex[:8]}", f"late-{uuid.uuid4().hex[:8]}"
    assert (await post_notification(http, server, [gate])).status_code == 202
    locker = pg_connect(postgres_server, module_db)
    watcher = pg_connect(postgres_server, module_db)
    locker.autocommit = False  # the lock lasts until its transaction ends
    watcher.autocommit = True
    try:
        locker.execute("SELECT 1 FROM notify_user_sequence WHERE user_id = %s FOR UPDATE", [gate])
        in_flight = asyncio.ensure_future(post_notification(http, server, [gate, other]))

        def statement_waits() -> bool:
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND query LIKE 'WITH a AS (%%'"
            ).fetchone()
            return row is not None and row[0] == 1

        await eventually(statement_waits, "the group's statement waits on the lock")
        server.terminate()
        # uvicorn cancelled the request; the ASGI shutdown waits for its group.
        await eventually(lambda: WAITING in server.log_text(), "the shutdown waits")
        assert server.returncode is None
        locker.commit()  # the lock goes: the statement commits
        # uvicorn re-raises the signal it captured once it has shut down.
        assert await asyncio.to_thread(server.wait, 60) in (0, -signal.SIGTERM)
        with contextlib.suppress(httpx.HTTPError):
            await in_flight  # its answer was cancelled with the request
        stored = dict(
            watcher.execute(
                "SELECT user_id, last_id FROM notify_user_sequence WHERE user_id = ANY(%s)",
                [[gate, other]],
            ).fetchall()
        )
        assert stored == {gate: 2, other: 1}
    finally:
        locker.close()
        watcher.close()
