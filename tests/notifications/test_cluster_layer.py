"""The Redis Cluster channel layer (notifications/cluster_layer.py) on a real
3 + 3 cluster: two layers stand for two processes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from notifications import cluster_layer
from notifications.cluster_layer import ClusterNotifyLayer
from notifications.slot_map import slot_of
from tests.support.redis_cluster import RedisCluster

WAIT = 30.0


class Inbox:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        self.changed.set()

    async def wait_for(self, count: int) -> list[dict[str, Any]]:
        async with asyncio.timeout(WAIT):
            while len(self.messages) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.messages


@pytest.fixture
async def layers(redis_cluster: RedisCluster) -> AsyncIterator[list[ClusterNotifyLayer]]:
    prefix = f"layertest{uuid.uuid4().hex[:8]}"
    made = [ClusterNotifyLayer(redis_cluster.url, prefix=prefix) for _ in range(2)]
    yield made
    for layer in made:
        await layer.flush()


async def test_group_messages_cross_layers_and_reach_only_members(
    layers: list[ClusterNotifyLayer],
) -> None:
    sender, receiver = layers
    groups = [f"u.{uuid.uuid4().hex}" for _ in range(12)]  # spread over the masters
    inboxes = {g: Inbox() for g in groups}
    for group in groups:
        await receiver.group_add(group, receiver.new_direct_channel(inboxes[group]))
    await sender.group_send_many([(g, {"type": "t", "g": g}) for g in groups])
    for group in groups:
        assert await inboxes[group].wait_for(1) == [{"type": "t", "g": group}]
    assert await receiver.health() is None


async def test_a_group_left_by_its_last_member_gets_nothing(
    layers: list[ClusterNotifyLayer],
) -> None:
    sender, receiver = layers
    gone, kept = f"u.{uuid.uuid4().hex}", f"u.{uuid.uuid4().hex}"
    gone_inbox, kept_inbox = Inbox(), Inbox()
    gone_channel = receiver.new_direct_channel(gone_inbox)
    await receiver.group_add(gone, gone_channel)
    await receiver.group_add(kept, receiver.new_direct_channel(kept_inbox))
    await receiver.group_discard(gone, gone_channel)
    await sender.group_send_many([(gone, {"type": "t", "n": 1}), (kept, {"type": "t", "n": 2})])
    await sender.group_send(kept, {"type": "t", "n": 3})
    assert [m["n"] for m in await kept_inbox.wait_for(2)] == [2, 3]
    assert gone_inbox.messages == []


@pytest.mark.timeout(120)
async def test_a_migrated_slot_is_followed_and_its_groups_reported_lost(
    fresh_redis_cluster: RedisCluster,
) -> None:
    cluster = fresh_redis_cluster
    sender = ClusterNotifyLayer(cluster.url, prefix="moving")
    receiver = ClusterNotifyLayer(cluster.url, prefix="moving")
    lost: list[set[str]] = []
    reported = asyncio.Event()

    async def listener(groups: set[str]) -> None:
        lost.append(groups)
        reported.set()

    cluster_layer.groups_lost_listeners.append(listener)
    try:
        group, other = f"u.{uuid.uuid4().hex}", f"u.{uuid.uuid4().hex}"
        slot = slot_of(receiver.sharded_channel(group))
        while slot_of(receiver.sharded_channel(other)) == slot:
            other = f"u.{uuid.uuid4().hex}"
        inbox, other_inbox = Inbox(), Inbox()
        await receiver.group_add(group, receiver.new_direct_channel(inbox))
        await receiver.group_add(other, receiver.new_direct_channel(other_inbox))
        source = cluster.owner_of(slot)
        target = next(m for m in cluster.masters() if m != source)

        await asyncio.to_thread(cluster.migrate_slot, slot, target)
        async with asyncio.timeout(WAIT):
            await reported.wait()
        assert lost == [{group}]  # only the moved group, not the other one

        # Subscribed on the new owner now: a message published there arrives.
        async with asyncio.timeout(WAIT):
            while await receiver.health() is not None:
                await asyncio.sleep(0.1)
        await sender.group_send(group, {"type": "t", "after": True})
        assert await inbox.wait_for(1) == [{"type": "t", "after": True}]
        with cluster.client_of(source.server) as old:
            assert receiver.sharded_channel(group) not in old.execute_command(
                "PUBSUB", "SHARDCHANNELS"
            )
    finally:
        cluster_layer.groups_lost_listeners.remove(listener)
        await sender.flush()
        await receiver.flush()
