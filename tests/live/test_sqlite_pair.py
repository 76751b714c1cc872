"""Two processes on Redis and one shared SQLite file (the default database, scaled out)."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Iterator

import httpx
import pytest

from tests.live.conftest import (
    Sockets,
    new_user,
    publish,
    server_env,
    start_server,
    stop_server,
    stored_notifications,
)
from tests.support.servers import LiveServer, RedisServer

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def sqlite_pair(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, LiveServer]]:
    db = (tmp_path_factory.mktemp("sqlite-pair") / "db.sqlite3").resolve()
    env = server_env(
        f"sqlite:///{db}", redis_server.url, NOTIFY_REDIS_PREFIX=f"sq{uuid.uuid4().hex[:8]}"
    )
    a = start_server(env)
    try:
        b = start_server(env, migrate=False)
    except BaseException:
        stop_server(a)
        raise
    yield a, b
    stop_server(b)
    stop_server(a)


async def test_socket_on_a_gets_post_on_b(
    sqlite_pair: tuple[LiveServer, LiveServer], sockets: Sockets, http: httpx.AsyncClient
) -> None:
    a, b = sqlite_pair
    user = new_user()
    sock = await sockets.open(a, user)
    await publish(http, b, [user], title="via b")
    [pushed] = await sock.wait_count(1)
    assert pushed["title"] == "via b"
    assert pushed["id"] == "1"


async def test_concurrent_posts_on_both_processes_arrive_in_order(
    sqlite_pair: tuple[LiveServer, LiveServer], sockets: Sockets, http: httpx.AsyncClient
) -> None:
    a, b = sqlite_pair
    users = [new_user(f"sq{i}") for i in range(3)]
    socks = {user: [await sockets.open(a, user), await sockets.open(b, user)] for user in users}
    plan = [users if i % 5 == 0 else [users[i % 3]] for i in range(90)]
    expected: dict[str, int] = defaultdict(int)
    for recipients in plan:
        for user in recipients:
            expected[user] += 1

    await asyncio.gather(
        *(
            publish(http, a if i % 2 else b, recipients, title=f"post {i}", data={"i": i})
            for i, recipients in enumerate(plan)
        )
    )
    for user in users:
        stored = await stored_notifications(http, a, user)
        assert [int(n["id"]) for n in stored] == list(range(1, expected[user] + 1))
        for sock in socks[user]:
            await sock.wait_count(expected[user], timeout=60)
            await sock.ping()
            assert sock.ids() == list(range(1, expected[user] + 1)), sock.label
            assert sock.notifications() == stored, sock.label
