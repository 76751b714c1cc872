"""Two processes on a Redis Cluster (3 masters, 3 replicas) whose topology changes
while notifications are published.

Contract, v1.1 "Redis Cluster": everything holds on a cluster; "while a master
fails over, the Redis outage rule above applies (202 or 503, never open and
deaf), and nothing accepted is lost". The clients are well-behaved frontends
(ResumingClient): on a close they reconnect elsewhere with ``since``. At the end
every client has every notification answered 202 for its user, exactly once and
in order, and exactly what is stored.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from notifications.delivery import group_name
from notifications.slot_map import slot_of
from tests.production.conftest import (
    ResumingClient,
    ServerPool,
    eventually,
    nothing_more_on_the_way,
    post_notification,
    prod_env,
    stored_notifications,
)
from tests.support.redis_cluster import RedisCluster
from tests.support.servers import LiveServer

pytestmark = pytest.mark.live

PREFIX = "notify"
DRAIN_TIMEOUT = 60.0


def channel_slot(user: str) -> int:
    """The slot of the user's sharded channel (notifications/cluster_layer.py)."""
    return slot_of(f"{PREFIX}:{{{group_name(user)}}}")


def users_in(slots: set[int] | None, count: int, tag: str, *, outside: bool = False) -> list[str]:
    """``count`` fresh user ids whose channel is in (or, ``outside``, not in) ``slots``."""
    found: list[str] = []
    while len(found) < count:
        user = f"{tag}-{random.getrandbits(48):012x}"
        inside = slots is None or channel_slot(user) in slots
        if inside != outside:
            found.append(user)
    return found


class Publisher:
    """POSTs to random users through both processes until stopped; counts what was accepted."""

    def __init__(self, http: httpx.AsyncClient, servers: list[LiveServer], users: list[str]):
        self.http, self.servers, self.users = http, servers, users
        self.accepted: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self._stop = asyncio.Event()
        self._rng = random.Random(15)
        self._task = asyncio.create_task(self._run())

    async def post(self, recipients: list[str], i: int) -> None:
        response = await post_notification(
            self.http, self.servers[i % 2], recipients, title=f"n{i}", data={"i": i}
        )
        self.statuses[response.status_code] += 1
        assert response.status_code in (202, 503), (response.status_code, response.text)
        if response.status_code == 202:
            self.accepted.update(recipients)

    async def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            await self.post(self._rng.sample(self.users, self._rng.choice((1, 2, 3))), i)
            i += 1
            await asyncio.sleep(0.02)

    async def posts_after(self, count: int) -> None:
        """Wait until ``count`` more POSTs have been answered."""
        target = sum(self.statuses.values()) + count
        while sum(self.statuses.values()) < target:
            assert not self._task.done(), self._task
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self._stop.set()
        await self._task


async def run_while_publishing(
    cluster: RedisCluster,
    pool: ServerPool,
    module_db: str,
    http: httpx.AsyncClient,
    users: list[str],
    change: Callable[[], Awaitable[None]],
) -> tuple[list[ResumingClient], Publisher]:
    a, b = pool.start_many(2, prod_env(module_db, None, REDIS_CLUSTER_URL=cluster.url))
    clients = [ResumingClient(u, [a, b]) for u in users] + [
        ResumingClient(u, [b, a]) for u in users
    ]
    await asyncio.gather(*(c.wait_ready() for c in clients))
    publisher = Publisher(http, [a, b], users)
    try:
        await publisher.posts_after(20)
        await change()
        await publisher.posts_after(40)  # and on, with the new topology
    finally:
        await publisher.stop()
    # One more to every user: a socket that missed a push learns of the gap now.
    await publisher.post(list(users), -1)
    assert publisher.statuses[202] >= 40, publisher.statuses
    try:
        await asyncio.gather(
            *(c.wait_ids(publisher.accepted[c.user], timeout=DRAIN_TIMEOUT) for c in clients)
        )
        await nothing_more_on_the_way(http, a, clients, publisher.accepted)  # no duplicate
        for user in users:
            stored = await stored_notifications(http, a, user)
            assert [int(n["id"]) for n in stored] == list(range(1, publisher.accepted[user] + 1))
            for client in (c for c in clients if c.user == user):
                assert client.ids == list(range(1, publisher.accepted[user] + 1)), (
                    f"{user}: {client.ids}; closes {client.closes}"
                )
                assert client.received == stored
    finally:
        await asyncio.gather(*(c.stop() for c in clients))
    return clients, publisher


@pytest.mark.timeout(300)
async def test_a_master_killed_mid_run_its_replica_takes_over_and_nothing_is_lost(
    fresh_redis_cluster: RedisCluster,  # first: it outlives the servers
    pool: ServerPool,
    module_db: str,
    http: httpx.AsyncClient,
) -> None:
    cluster = fresh_redis_cluster
    victim_slot = channel_slot(users_in(None, 1, "probe")[0])
    victim = cluster.owner_of(victim_slot)
    first, last = next((f, la) for f, la, n in cluster.slot_table() if n == victim)
    on_victim = users_in(set(range(first, last + 1)), 3, "failover")
    elsewhere = users_in(set(range(first, last + 1)), 3, "steady", outside=True)

    async def kill_master() -> None:
        dead = cluster.kill_master_of(victim_slot)
        assert dead == victim
        await asyncio.to_thread(cluster.wait_failover, victim_slot, dead)

    clients, publisher = await run_while_publishing(
        cluster, pool, module_db, http, on_victim + elsewhere, kill_master
    )
    print(f"answers: {publisher.statuses}")
    # The sockets of users on the dead master were closed for their clients to resume.
    for client in clients:
        if client.user in on_victim:
            assert len(client.connected_to) >= 2, (client.user, client.closes)


@pytest.mark.timeout(300)
async def test_slots_migrated_while_publishing_lose_nothing_and_leave_no_stale_subscription(
    fresh_redis_cluster: RedisCluster,
    pool: ServerPool,
    module_db: str,
    http: httpx.AsyncClient,
) -> None:
    cluster = fresh_redis_cluster
    moving = users_in(None, 3, "moving")
    staying = users_in({channel_slot(u) for u in moving}, 2, "staying", outside=True)
    slots = {channel_slot(u) for u in moving}
    source = {u: cluster.owner_of(channel_slot(u)) for u in moving}
    targets = {u: next(m for m in cluster.masters() if m != source[u]) for u in moving}

    def where_subscribed(user: str) -> tuple[bool, bool]:
        """(on the old owner, on the new owner): is the user's channel subscribed there?"""
        channel = f"{PREFIX}:{{{group_name(user)}}}"
        answers = []
        for node in (source[user], targets[user]):
            with cluster.client_of(node.server) as client:
                answers.append(channel in client.execute_command("PUBSUB", "SHARDCHANNELS"))
        return answers[0], answers[1]

    async def migrate() -> None:
        for user in moving:
            assert await asyncio.to_thread(where_subscribed, user) == (True, False)
        for user in moving:
            await asyncio.to_thread(cluster.migrate_slot, channel_slot(user), targets[user])
        for user in moving:
            assert cluster.owner_of(channel_slot(user)) == targets[user]
            # The clients are connected throughout: their processes follow the
            # slot to its new owner and stay subscribed nowhere else.
            await eventually(
                lambda user=user: asyncio.to_thread(where_subscribed, user),  # type: ignore[misc]
                lambda answer: answer == (False, True),
                timeout=30,
                what=f"{user}'s channel subscribed only on the new owner of slot(s) {slots}",
            )

    await run_while_publishing(cluster, pool, module_db, http, moving + staying, migrate)


@pytest.mark.timeout(180)
async def test_one_subscriber_connection_per_master_per_process(
    fresh_redis_cluster: RedisCluster,  # no other process subscribes on it
    pool: ServerPool,
    module_db: str,
    http: httpx.AsyncClient,
) -> None:
    """Subscriptions are grouped per master: however many users a process serves,
    each master sees one sharded-pub/sub connection from it."""
    redis_cluster = fresh_redis_cluster
    prefix = f"grouped{random.getrandbits(32):08x}"
    env = prod_env(module_db, None, REDIS_CLUSTER_URL=redis_cluster.url, NOTIFY_REDIS_PREFIX=prefix)
    a, b = pool.start_many(2, env)
    users = [f"grouped-{i}-{random.getrandbits(32):08x}" for i in range(30)]
    masters = redis_cluster.masters()
    by_master = Counter(
        redis_cluster.owner_of(slot_of(f"{prefix}:{{{group_name(u)}}}")).node_id for u in users
    )
    assert len(by_master) == len(masters), "every master should own some of the users"
    clients = [ResumingClient(u, [a, b]) for u in users] + [
        ResumingClient(u, [b, a]) for u in users
    ]
    try:
        await asyncio.gather(*(c.wait_ready() for c in clients))

        def subscribers(node_server: Any) -> list[int]:
            """The ssub count of each client of the node holding sharded subscriptions."""
            with redis_cluster.client_of(node_server) as client:
                entries = client.execute_command("CLIENT", "LIST")
            counts = [int(e.get("ssub", 0)) for e in _client_list(entries)]
            return sorted(c for c in counts if c > 0)

        for node in masters:
            # Two processes: two connections, each subscribed to this master's users.
            ours = subscribers(node.server)
            assert ours == [by_master[node.node_id]] * 2, (node, ours)
        response = await post_notification(http, a, users, title="to all")
        assert response.status_code == 202
        await asyncio.gather(*(c.wait_ids(1) for c in clients))
    finally:
        await asyncio.gather(*(c.stop() for c in clients))


def _client_list(raw: Any) -> list[dict[str, str]]:
    """CLIENT LIST as dicts (redis-py parses it for some versions, not others)."""
    if isinstance(raw, list):
        return [dict(entry) for entry in raw]
    return [
        dict(part.split("=", 1) for part in line.split() if "=" in part)
        for line in str(raw).splitlines()
    ]
