"""Fan-out across three processes: every socket gets exactly its user's notifications.

200 users with two sockets each, spread over three uvicorn processes; 2,000
notifications (unicast POSTs and small batches) POSTed ~32 at a time to all three
processes. Contract: "Every socket receives a user's notifications in increasing id
order with no gaps against what is stored, even when they were published
concurrently through different processes", and "no other user's socket ever does".
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Iterator

import httpx
import pytest

from tests.production.conftest import (
    ServerPool,
    Socket,
    Sockets,
    new_user,
    post_notification,
    prod_env,
    stored_notifications,
)
from tests.support.redis_cluster import REDIS_TOPOLOGIES, redis_env
from tests.support.servers import LiveServer, RedisServer

pytestmark = pytest.mark.live

USERS = 200
SOCKETS_PER_USER = 2
NOTIFICATIONS = 2000
CONCURRENCY = 32
DRAIN_TIMEOUT = 60.0


@pytest.fixture(scope="module", params=REDIS_TOPOLOGIES)
def trio(request: pytest.FixtureRequest, module_db: str) -> Iterator[list[LiveServer]]:
    """Three processes on a private redis-server, or on the session's Redis Cluster."""
    if request.param == "redis":
        redis: RedisServer = request.getfixturevalue("module_redis")
        env = prod_env(module_db, redis.url)
    else:
        # A prefix of its own: the session's cluster is shared with other modules.
        prefix = f"fanout{random.getrandbits(32):08x}"
        cluster = redis_env(request, request.param)
        env = prod_env(module_db, None, NOTIFY_REDIS_PREFIX=prefix, **cluster)
    pool = ServerPool()  # one topology's servers at a time
    try:
        yield pool.start_many(3, env)
    finally:
        pool.close_all()


def plan_posts(users: list[str], rng: random.Random) -> list[list[str]]:
    """Unicast and batches of 2..5 distinct users, NOTIFICATIONS recipients in all."""
    plan: list[list[str]] = []
    total = 0
    while total < NOTIFICATIONS:
        size = 1 if rng.random() < 0.5 else rng.randint(2, 5)
        size = min(size, NOTIFICATIONS - total)
        plan.append(rng.sample(users, size))
        total += size
    return plan


@pytest.mark.timeout(240)
async def test_every_socket_gets_exactly_its_users_notifications_in_order(
    trio: list[LiveServer], sockets: Sockets, http: httpx.AsyncClient
) -> None:
    rng = random.Random(4242)
    users = [new_user(f"fan{i}") for i in range(USERS)]

    # Two sockets per user, never both on the same process.
    gate = asyncio.Semaphore(40)

    async def open_one(user_index: int, k: int) -> tuple[str, Socket]:
        server = trio[(user_index + k) % len(trio)]
        async with gate:
            sock = await sockets.open(server, users[user_index], open_timeout=60)
        return users[user_index], sock

    opened = await asyncio.gather(
        *(open_one(i, k) for i in range(USERS) for k in range(SOCKETS_PER_USER))
    )
    by_user: dict[str, list[Socket]] = defaultdict(list)
    for user, sock in opened:
        by_user[user].append(sock)
    assert sum(len(s) for s in by_user.values()) == USERS * SOCKETS_PER_USER

    plan = plan_posts(users, rng)
    expected_titles: dict[str, set[str]] = defaultdict(set)
    for i, recipients in enumerate(plan):
        for user in recipients:
            expected_titles[user].add(f"post-{i}")

    post_gate = asyncio.Semaphore(CONCURRENCY)
    statuses: list[int] = []

    async def post_one(i: int, recipients: list[str]) -> None:
        async with post_gate:
            response = await post_notification(
                http,
                trio[i % len(trio)],
                recipients,
                title=f"post-{i}",
                data={"i": i, "n": len(recipients)},
            )
        statuses.append(response.status_code)
        assert response.status_code == 202, (i, response.status_code, response.text)
        assert response.json()["recipients"] == len(recipients)

    await asyncio.gather(*(post_one(i, r) for i, r in enumerate(plan)))
    assert statuses == [202] * len(plan)
    total_deliveries = sum(len(r) for r in plan) * SOCKETS_PER_USER
    assert total_deliveries == NOTIFICATIONS * SOCKETS_PER_USER

    # Drain: every socket reaches its user's count (or the generous timeout ends).
    all_socks = [s for socks in by_user.values() for s in socks]
    await asyncio.gather(
        *(
            sock.wait_count(len(expected_titles[user]), timeout=DRAIN_TIMEOUT)
            for user, socks in by_user.items()
            for sock in socks
        )
    )
    # A ping round trip on each: anything extra (a duplicate, a stray) has arrived by now.
    await asyncio.gather(*(sock.ping(timeout=DRAIN_TIMEOUT) for sock in all_socks))

    delivered = 0
    for user, socks in by_user.items():
        want = expected_titles[user]
        for sock in socks:
            notes = sock.notifications()
            delivered += len(notes)
            assert sock.ids() == list(range(1, len(want) + 1)), (
                f"{sock.label}: ids {sock.ids()} (want 1..{len(want)})"
            )
            titles = [n["title"] for n in notes]
            assert len(set(titles)) == len(titles), f"{sock.label}: a notification twice"
            assert set(titles) == want, f"{sock.label}: foreign or missing notifications"
            assert all(n["source"] == "shop" and n["data"]["i"] >= 0 for n in notes)
        # Both sockets of the user saw the same id -> notification mapping.
        first, second = socks
        assert first.notifications() == second.notifications()
    assert delivered == total_deliveries

    # Cross-check with what is stored, through each process in turn.
    for j, user in enumerate(users[:: USERS // 12]):
        stored = await stored_notifications(http, trio[j % len(trio)], user)
        assert stored == by_user[user][0].notifications(), user
