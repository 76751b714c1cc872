"""Presence counts a member while its process is alive (notifications/presence.py),
on a real redis-server and a real Redis Cluster.

The other processes of a deployment are stood in for by what they leave in
Redis: a member ``<process id>:<channel>`` in the user's set, and the process's
key ``<prefix>:process:<process id>`` while it lives (a killed process leaves
its members and its key expires).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis import asyncio as aioredis

from notifications import presence, processes
from notifications.redis_clients import RedisSettings, sync_client
from tests.support.redis_cluster import REDIS_TOPOLOGIES
from tests.support.servers import RedisServer

USERS = 300


@pytest.fixture(params=REDIS_TOPOLOGIES)
def cfg(request: pytest.FixtureRequest) -> RedisSettings:
    if request.param == "redis":
        return RedisSettings(urls=(request.getfixturevalue("redis_server").url,))
    return RedisSettings(urls=(), cluster_url=request.getfixturevalue("redis_cluster").url)


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"  # this test's keys only, on the shared servers


@pytest.fixture
async def backend(cfg: RedisSettings, prefix: str) -> AsyncIterator[presence.RedisPresence]:
    made = presence.RedisPresence(cfg, prefix)
    yield made
    for client in made._clients.values():
        if isinstance(client, aioredis.Redis):
            await client.aclose(close_connection_pool=True)
        else:  # a cluster client closes its nodes' pools
            await client.aclose()


@pytest.fixture
def direct(cfg: RedisSettings) -> Iterator[Any]:
    """What the other processes (and an operator) see in Redis."""
    client = sync_client(cfg)
    yield client
    client.close()


def other_process_joins(direct: Any, prefix: str, user: str, process_id: str) -> None:
    """As another live process writes it: its key first, then its member."""
    direct.set(processes.process_key(process_id, prefix), "{}", ex=int(presence.TTL))
    direct.zadd(
        presence.key_for(user, prefix),
        {f"{process_id}:chan": time.time() + presence.MEMBER_TTL},
    )


def scores(direct: Any, prefix: str, users: list[str]) -> dict[str, float]:
    """Each user's one member's score (its expiry), read in one pipeline."""
    pipe = direct.pipeline(transaction=False)
    for user in users:
        pipe.zscore(presence.key_for(user, prefix), f"{presence.PROCESS_ID}:c-{user}")
    return dict(zip(users, pipe.execute(), strict=True))


def members(direct: Any, prefix: str, user: str) -> set[str]:
    return {m.decode() for m in direct.zrange(presence.key_for(user, prefix), 0, -1)}


async def test_the_members_of_a_process_without_its_key_stop_counting_and_are_removed(
    backend: presence.RedisPresence, direct: Any, prefix: str
) -> None:
    await backend.connected("alice", "mine")
    other_process_joins(direct, prefix, "alice", "alive")
    other_process_joins(direct, prefix, "alice", "killed")
    direct.delete(processes.process_key("killed", prefix))  # its key expired

    assert await backend.count("alice") == 2
    assert members(direct, prefix, "alice") == {
        f"{presence.PROCESS_ID}:mine",
        "alive:chan",
    }


async def test_a_process_started_since_the_last_count_counts_at_once(
    backend: presence.RedisPresence, direct: Any, prefix: str
) -> None:
    other_process_joins(direct, prefix, "bob", "first")
    assert await backend.count("bob") == 1  # "first" is now known alive

    other_process_joins(direct, prefix, "bob", "fresh")  # never seen before
    assert await backend.count("bob") == 2


async def test_a_heartbeat_refreshes_a_slice_of_the_users_and_every_key_expires(
    backend: presence.RedisPresence, direct: Any, prefix: str
) -> None:
    users = [f"u{i}" for i in range(USERS)]
    for user in users:
        await backend.connected(user, f"c-{user}")
    written = scores(direct, prefix, users)

    refreshed: list[int] = []
    for _ in range(presence.REFRESH_ROUNDS):
        before = scores(direct, prefix, users)
        await backend.heartbeat()
        after = scores(direct, prefix, users)
        refreshed.append(sum(after[u] > before[u] for u in users))

    # One refresh period: every user once, a slice per heartbeat (not every
    # socket every heartbeat, as one write per socket did).
    assert sum(refreshed) == USERS
    assert max(refreshed) < USERS / 4
    final = scores(direct, prefix, users)
    assert all(final[u] > written[u] for u in users)

    keys = list(direct.scan_iter(match=f"{prefix}:*", count=1000))
    assert len(keys) == USERS + 1  # the users' sets and this process's key
    ttls = [direct.ttl(key) for key in keys]
    assert all(0 < ttl <= presence.KEY_TTL for ttl in ttls), sorted(set(ttls))


async def test_after_its_key_lapsed_a_process_writes_all_its_members_again(
    backend: presence.RedisPresence, direct: Any, prefix: str
) -> None:
    users = [f"u{i}" for i in range(20)]
    for user in users:
        await backend.connected(user, f"c-{user}")
    await backend.heartbeat()
    # The process stalled past TTL: its key expired, and other processes
    # counting its users removed its members as a dead process's.
    direct.delete(processes.process_key(presence.PROCESS_ID, prefix))
    for user in users:
        direct.delete(presence.key_for(user, prefix))

    await backend.heartbeat()

    assert all(members(direct, prefix, u) == {f"{presence.PROCESS_ID}:c-{u}"} for u in users)
    assert direct.ttl(processes.process_key(presence.PROCESS_ID, prefix)) > 0


async def test_a_closed_socket_leaves_and_a_heartbeat_does_not_bring_it_back(
    backend: presence.RedisPresence, direct: Any, prefix: str
) -> None:
    await backend.connected("carol", "a")
    await backend.connected("carol", "b")
    await backend.disconnected("carol", "a")
    for _ in range(presence.REFRESH_ROUNDS + 1):
        await backend.heartbeat()
    assert members(direct, prefix, "carol") == {f"{presence.PROCESS_ID}:b"}
    assert await backend.count("carol") == 1


async def test_writes_that_failed_while_redis_was_down_are_made_at_the_heartbeat(
    fresh_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = RedisSettings(urls=(fresh_redis_server.url,))
    backend = presence.RedisPresence(cfg, "outage")
    direct = sync_client(cfg)
    try:
        await backend.connected("erin", "stays")
        await backend.connected("erin", "leaves")
        fresh_redis_server.stop()
        with caplog.at_level(logging.WARNING, logger="notifications.presence"):
            await backend.connected("erin", "joined-meanwhile")
            await backend.disconnected("erin", "leaves")
        assert "presence update of 1 sockets failed" in caplog.text
        assert "presence removal of 1 sockets failed" in caplog.text
        fresh_redis_server.start()  # empty: as after a restart without persistence

        await backend.heartbeat()

        assert members(direct, "outage", "erin") == {
            f"{presence.PROCESS_ID}:stays",
            f"{presence.PROCESS_ID}:joined-meanwhile",
        }
        assert await backend.count("erin") == 2
    finally:
        direct.close()
        for client in backend._clients.values():
            await client.aclose(close_connection_pool=True)
