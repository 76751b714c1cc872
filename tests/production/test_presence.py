"""Presence, "counted across every process of the deployment", on a
redis-server and on a Redis Cluster.

``GET /api/v1/users/{id}/presence`` on any process sums the user's sockets on all
of them; closing them brings it back to 0; a process that dies without cleanup
(SIGKILL) stops counting within the presence TTL (notifications/processes.py:
a process's key, TTL 30 s, set every 10 s), and its members are removed; a
process started later counts from its first socket; an idle process's
heartbeat writes per process, not per socket (docs/presence.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
import redis.cluster

from notifications.presence import KEY_TTL, key_for
from tests.production.conftest import (
    ServerPool,
    Sockets,
    eventually,
    new_user,
    presence,
    prod_env,
)
from tests.support.redis_cluster import REDIS_TOPOLOGIES, redis_env
from tests.support.servers import LiveServer, RedisServer

pytestmark = pytest.mark.live

PRESENCE_TTL = 30.0
HEARTBEAT = 10.0
# The documented bound is the TTL (plus a heartbeat); waited for generously, as
# a loaded machine may run the expiry late. The contract states no time.
KILL_WAIT = 3 * (PRESENCE_TTL + HEARTBEAT)
IDLE_SOCKETS = 200


@pytest.fixture(scope="module", params=REDIS_TOPOLOGIES)
def env(request: pytest.FixtureRequest, module_db: str) -> dict[str, str]:
    if request.param == "redis":
        module_redis: RedisServer = request.getfixturevalue("module_redis")
        return prod_env(module_db, module_redis.url)
    return prod_env(module_db, None, **redis_env(request, request.param))


@pytest.fixture(scope="module")
def direct(env: dict[str, str]) -> Iterator[Any]:
    """The servers' Redis as an operator sees it."""
    if "REDIS_CLUSTER_URL" in env:
        client: Any = redis.cluster.RedisCluster.from_url(env["REDIS_CLUSTER_URL"])
    else:
        client = redis.Redis.from_url(env["REDIS_URL"])
    yield client
    client.close()


@pytest.fixture(scope="module")
def trio(module_pool: ServerPool, env: dict[str, str]) -> list[LiveServer]:
    return module_pool.start_many(3, env)


async def counts_everywhere(
    http: httpx.AsyncClient, servers: list[LiveServer], user: str
) -> list[int]:
    answers = [await presence(http, server, user) for server in servers]
    for answer in answers:
        assert answer["user_id"] == user
        assert answer["online"] is (answer["connections"] > 0)
    return [answer["connections"] for answer in answers]


async def test_presence_sums_sockets_of_every_process_and_drops_to_zero(
    trio: list[LiveServer], sockets: Sockets, http: httpx.AsyncClient
) -> None:
    alice, bob = new_user("alice"), new_user("bob")
    assert await counts_everywhere(http, trio, alice) == [0, 0, 0]

    # alice: 1 socket on the first process, 2 on the second, 3 on the third.
    alice_socks = [
        await sockets.open(server, alice) for i, server in enumerate(trio) for _ in range(i + 1)
    ]
    bob_sock = await sockets.open(trio[1], bob)

    assert await counts_everywhere(http, trio, alice) == [6, 6, 6]
    assert await counts_everywhere(http, trio, bob) == [1, 1, 1]
    other = await presence(http, trio[0], new_user("nobody"))
    assert other["online"] is False and other["connections"] == 0

    # Close the sockets of one process: only those stop counting.
    for sock in alice_socks[3:]:
        await sock.close()
    await eventually(
        lambda: counts_everywhere(http, trio, alice),
        lambda counts: counts == [3, 3, 3],
        what="alice's count after closing her 3 sockets on the third process",
    )
    for sock in alice_socks[:3]:
        await sock.close()
    await bob_sock.close()
    await eventually(
        lambda: counts_everywhere(http, trio, alice),
        lambda counts: counts == [0, 0, 0],
        what="alice's count after closing every socket",
    )
    assert await counts_everywhere(http, trio, bob) == [0, 0, 0]


@pytest.mark.timeout(300)
async def test_sockets_of_a_killed_process_stop_counting_within_the_ttl(
    trio: list[LiveServer],
    pool: ServerPool,
    env: dict[str, str],
    direct: Any,
    sockets: Sockets,
    http: httpx.AsyncClient,
) -> None:
    victim = pool.start(env)  # a fourth process, so the module's three stay intact
    user = new_user("carol")
    await sockets.open(trio[0], user)
    victim_socks = [await sockets.open(victim, user) for _ in range(3)]
    assert await counts_everywhere(http, trio, user) == [4, 4, 4]

    victim.kill()  # SIGKILL: no disconnect handler runs, nothing is removed from Redis
    for sock in victim_socks:
        await sock.wait_closed()

    counts = await eventually(
        lambda: counts_everywhere(http, trio, user),
        lambda counts: counts == [1, 1, 1],
        timeout=KILL_WAIT,
        interval=1.0,
        what="the killed process's 3 sockets to stop counting",
    )
    assert counts == [1, 1, 1]

    # The survivor's socket still counts after the others expired, and the
    # count removed the dead process's members; the user's key expires.
    assert (await presence(http, trio[2], user))["online"] is True
    key = key_for(user)
    assert len(direct.zrange(key, 0, -1)) == 1
    assert 0 < direct.ttl(key) <= KEY_TTL


async def test_a_process_started_after_the_others_counted_counts_its_first_socket(
    trio: list[LiveServer],
    pool: ServerPool,
    env: dict[str, str],
    sockets: Sockets,
    http: httpx.AsyncClient,
) -> None:
    user = new_user("dave")
    await sockets.open(trio[0], user)
    assert await counts_everywhere(http, trio, user) == [1, 1, 1]

    newcomer = pool.start(env)  # a process none of the others has seen
    await sockets.open(newcomer, user)
    assert await counts_everywhere(http, trio, user) == [2, 2, 2]


@pytest.mark.timeout(300)
async def test_an_idle_process_heartbeat_writes_per_process_not_per_socket(
    pool: ServerPool,
    module_db: str,
    fresh_redis_server: RedisServer,  # its command counts are this process's alone
    sockets: Sockets,
) -> None:
    server = pool.start(prod_env(module_db, fresh_redis_server.url))
    users = [new_user(f"idle{i}") for i in range(IDLE_SOCKETS)]
    await asyncio.gather(*(sockets.open(server, user) for user in users))
    client = redis.Redis.from_url(fresh_redis_server.url)
    try:
        (process_key,) = client.keys("notify:process:*")
        await heartbeat(client, process_key)
        client.config_resetstat()
        await heartbeat(client, process_key)
        await heartbeat(client, process_key)
        stats = client.info("commandstats")
    finally:
        client.close()
    written = sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("zadd", "expire"))
    # Two heartbeats: the process key, a slice (1/60) of the users each, and
    # the reads of this test; one ZADD per socket per heartbeat would be 2 x 200.
    assert written < IDLE_SOCKETS / 4, stats


async def heartbeat(client: redis.Redis, key: bytes) -> None:
    """Returns once the process has set its key again (its TTL went up)."""
    deadline = time.monotonic() + 3 * HEARTBEAT
    last = client.pttl(key)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        now = client.pttl(key)
        if now > last + 1000:
            return
        last = now
    raise AssertionError(f"{key!r} was not refreshed within {3 * HEARTBEAT} s")
