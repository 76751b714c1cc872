"""notifications.channel_layer against a real redis-server (no fakes)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from notifications.channel_layer import RedisNotifyLayer
from tests.support.servers import RedisServer


def layer_for(*urls: str) -> RedisNotifyLayer:
    return RedisNotifyLayer(
        hosts=[{"address": url} for url in urls], prefix=f"t{uuid.uuid4().hex[:8]}"
    )


async def test_group_send_many_reaches_each_group(redis_server: RedisServer) -> None:
    layer = layer_for(redis_server.url)
    channels = [await layer.new_channel() for _ in range(3)]
    for i, channel in enumerate(channels):
        await layer.group_add(f"g{i}", channel)
    await layer.group_send_many([(f"g{i}", {"type": "x", "n": i}) for i in range(3)])
    got = [await asyncio.wait_for(layer.receive(c), 5) for c in channels]
    assert [m["n"] for m in got] == [0, 1, 2]
    await layer.flush()


async def test_groups_spread_over_shards_and_all_deliver(
    redis_server: RedisServer, fresh_redis_server: RedisServer
) -> None:
    layer = layer_for(redis_server.url, fresh_redis_server.url)
    groups = [f"user{i}" for i in range(40)]
    channels = {g: await layer.new_channel() for g in groups}
    for group, channel in channels.items():
        await layer.group_add(group, channel)
    # Both shards hold subscriptions: the groups really are spread.
    counts = []
    for server in (redis_server, fresh_redis_server):
        client = server.client()
        counts.append(len(client.pubsub_channels("*__group__*")))
        client.close()
    assert all(count > 0 for count in counts) and sum(counts) == len(groups)
    await layer.group_send_many([(g, {"type": "x", "g": g}) for g in groups])
    for group, channel in channels.items():
        assert (await asyncio.wait_for(layer.receive(channel), 5))["g"] == group
    await layer.flush()


async def test_health_reports_a_stopped_subscriber(redis_server: RedisServer) -> None:
    layer = layer_for(redis_server.url)
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    assert await layer.health() is None
    shard = layer._get_layer()._shards[0]
    shard._receive_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await shard._receive_task
    assert await layer.health() == "subscriber task stopped"
    await layer.flush()


async def test_health_reports_redis_down(fresh_redis_server: RedisServer) -> None:
    layer = layer_for(fresh_redis_server.url)
    assert await layer.health() is None
    fresh_redis_server.stop()
    problem = await layer.health()
    assert problem is not None and "redis" in problem
    fresh_redis_server.start()
    assert await layer.health() is None
    await layer.flush()
