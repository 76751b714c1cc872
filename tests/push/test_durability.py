"""Owed pushes survive the process: kill -9 after a 202 whose push failed
once, and the push still arrives, exactly once. And the worker as a
separate process (``manage.py push_worker``), as its Deployment runs it."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.push.conftest import (
    Outbox,
    Sockets,
    Vapid,
    drained,
    new_user,
    publish,
    push_env,
    server_env,
    start_server,
    stop_server,
    subscribe,
)
from tests.support.push_service import PushService, Subscription
from tests.support.servers import REPO_ROOT, LiveServer, PostgresServer, RedisServer

pytestmark = [pytest.mark.live, pytest.mark.timeout(240)]


@pytest.fixture
def env(
    redis_server: RedisServer,
    postgres_server: PostgresServer,
    vapid: Vapid,
    push_service: PushService,
) -> dict[str, str]:
    return server_env(
        postgres_server.create_database(),
        redis_server.url,
        NOTIFY_REDIS_PREFIX=f"pushdur{uuid.uuid4().hex[:8]}",
        **push_env(vapid, push_service),
    )


async def test_kill_9_after_a_failed_push_loses_nothing_and_sends_once(
    http: httpx.AsyncClient, push_service: PushService, env: dict[str, str]
) -> None:
    user = new_user()
    sub = push_service.subscription()
    first = start_server(env)
    try:
        await subscribe(http, first, user, sub)
        # The first attempt fails; its retry is due 5 s later, after the kill.
        push_service.answer(sub, 500, retry_after="5")
        await _publish_and_fail_once(
            http, first, user, sub, push_service, Outbox(env["DATABASE_URL"])
        )
        first.kill()  # SIGKILL: no drain, no cleanup
    finally:
        stop_server(first)
    second = start_server(env, migrate=False)
    try:
        await push_service.until(lambda: push_service.delivered(sub), timeout=90)
        await drained(Outbox(env["DATABASE_URL"]), user)
        assert [r.status for r in push_service.messages(sub)] == [500, 201]
    finally:
        stop_server(second)


async def _publish_and_fail_once(
    http: httpx.AsyncClient,
    server: LiveServer,
    user: str,
    sub: Subscription,
    push_service: PushService,
    outbox: Outbox,
) -> None:
    """Publish; the push service answers 500; wait until the retry is stored."""
    await publish(http, server, [user], title="owed")
    await push_service.until(lambda: len(push_service.messages(sub)) == 1)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not await asyncio.to_thread(outbox.rows, user, attempts=1):
        assert loop.time() < deadline, "the failed push was not scheduled for a retry"
        await asyncio.sleep(0.02)


@pytest.fixture
def service_without_worker(env: dict[str, str]) -> Iterator[LiveServer]:
    server = start_server({**env, "NOTIFY_PUSH_WORKER_IN_PROCESS": "false"})
    yield server
    stop_server(server)


async def test_push_worker_command_sends_what_the_service_owes(
    http: httpx.AsyncClient,
    push_service: PushService,
    env: dict[str, str],
    service_without_worker: LiveServer,
    sockets: Sockets,
) -> None:
    offline, online = new_user(), new_user()
    offline_sub, online_sub = push_service.subscription(), push_service.subscription()
    await subscribe(http, service_without_worker, offline, offline_sub)
    await subscribe(http, service_without_worker, online, online_sub)
    await sockets.open(service_without_worker, online)
    await publish(http, service_without_worker, [offline, online], title="from the worker")
    db = Outbox(env["DATABASE_URL"])
    assert await asyncio.to_thread(db.rows, offline) == 1  # owed, nobody sends
    log = service_without_worker.tmp_dir / "push_worker.log"
    with log.open("ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "push_worker", "--metrics-port", "0"],
            cwd=REPO_ROOT,
            env=service_without_worker.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        await push_service.until(lambda: push_service.delivered(offline_sub), timeout=60)
        await drained(db, offline)
        await drained(db, online)
        assert push_service.messages(online_sub) == []  # connected: no push (auto)
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 30) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
