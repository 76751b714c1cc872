"""Presence, "counted across every process of the deployment".

``GET /api/v1/users/{id}/presence`` on any process sums the user's sockets on all
of them; closing them brings it back to 0; a process that dies without cleanup
(SIGKILL) stops counting within the presence TTL (notifications/presence.py:
TTL 30 s, refreshed every 10 s).
"""

from __future__ import annotations

import httpx
import pytest

from tests.production.conftest import (
    ServerPool,
    Sockets,
    eventually,
    new_user,
    presence,
    prod_env,
)
from tests.support.servers import LiveServer, RedisServer

pytestmark = pytest.mark.live

PRESENCE_TTL = 30.0
HEARTBEAT = 10.0
# The documented bound is the TTL (plus a heartbeat); waited for generously, as
# a loaded machine may run the expiry late. The contract states no time.
KILL_WAIT = 3 * (PRESENCE_TTL + HEARTBEAT)


@pytest.fixture(scope="module")
def env(module_redis: RedisServer, module_db: str) -> dict[str, str]:
    return prod_env(module_db, module_redis.url)


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

    # The survivor's socket still counts after the others expired.
    assert (await presence(http, trio[2], user))["online"] is True
