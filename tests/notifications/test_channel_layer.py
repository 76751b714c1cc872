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


def subscribe_calls(server: RedisServer) -> int:
    client = server.client()
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return int(stats.get("cmdstat_subscribe", {}).get("calls", 0))


async def test_groups_joined_together_share_one_subscribe_and_each_gets_its_messages(
    fresh_redis_server: RedisServer,
) -> None:
    layer = layer_for(fresh_redis_server.url)
    groups = [f"together{i}" for i in range(50)]
    channels = {g: await layer.new_channel() for g in groups}
    before = subscribe_calls(fresh_redis_server)
    await asyncio.gather(*(layer.group_add(g, c) for g, c in channels.items()))
    # One SUBSCRIBE for the 50 groups joined in the same loop iteration
    # (channels-redis sends one each).
    assert subscribe_calls(fresh_redis_server) - before == 1
    await layer.group_send_many([(g, {"type": "x", "g": g}) for g in groups])
    for group, channel in channels.items():
        assert (await asyncio.wait_for(layer.receive(channel), 5))["g"] == group
    # Exactly once: nothing else is waiting on any channel.
    await layer.group_send_many([(g, {"type": "x", "g": "second"}) for g in groups])
    for channel in channels.values():
        assert (await asyncio.wait_for(layer.receive(channel), 5))["g"] == "second"
    await layer.flush()


async def test_a_group_left_and_joined_again_at_once_stays_subscribed(
    redis_server: RedisServer,
) -> None:
    layer = layer_for(redis_server.url)
    leaving, joining, other = [await layer.new_channel() for _ in range(3)]
    await layer.group_add("g", leaving)
    # A publish holds the shard while it waits for Redis: the SUBSCRIBE of
    # the next joins ("h", then "g" again) queues behind it, and so does the
    # UNSUBSCRIBE of "g" (its last member left in between). The SUBSCRIBE
    # goes first and finds "g" still subscribed; the UNSUBSCRIBE must then
    # see that "g" has a member again and leave it subscribed.

    async def leave_and_join_again() -> None:
        await asyncio.sleep(0)  # once the SUBSCRIBE's sender waits for the shard
        await asyncio.gather(layer.group_discard("g", leaving), layer.group_add("g", joining))

    await asyncio.gather(
        layer.group_send_many([("nobody", {"type": "x"})]),
        layer.group_add("h", other),
        leave_and_join_again(),
    )
    await layer.group_send_many([("g", {"type": "x", "n": 1}), ("h", {"type": "x", "n": 2})])
    assert (await asyncio.wait_for(layer.receive(joining), 5))["n"] == 1
    assert (await asyncio.wait_for(layer.receive(other), 5))["n"] == 2
    await layer.flush()


async def test_a_failed_subscribe_fails_every_join_of_its_batch(
    fresh_redis_server: RedisServer,
) -> None:
    layer = layer_for(fresh_redis_server.url)
    channels = [await layer.new_channel() for _ in range(3)]
    fresh_redis_server.stop()
    try:
        results = await asyncio.gather(
            *(layer.group_add(f"down{i}", c) for i, c in enumerate(channels)),
            return_exceptions=True,
        )
        assert all(isinstance(r, Exception) for r in results), results
    finally:
        fresh_redis_server.start()
    # Redis is back: the next joins subscribe afresh.
    for i, channel in enumerate(channels):
        await layer.group_add(f"down{i}", channel)
    await layer.group_send_many([(f"down{i}", {"type": "x", "n": i}) for i in range(3)])
    assert [(await asyncio.wait_for(layer.receive(c), 5))["n"] for c in channels] == [0, 1, 2]
    await layer.flush()


async def test_a_join_cancelled_while_queued_leaves_the_others_subscribe_alone(
    redis_server: RedisServer,
) -> None:
    layer = layer_for(redis_server.url)
    channels = [await layer.new_channel() for _ in range(3)]
    joins = [
        asyncio.ensure_future(layer.group_add(f"queued{i}", c)) for i, c in enumerate(channels)
    ]
    # Each join has queued its group for the next SUBSCRIBE (tasks run in the
    # order made, before this one resumes); the command is not sent yet.
    await asyncio.sleep(0)
    joins[0].cancel()  # its socket closed meanwhile
    await asyncio.gather(*joins[1:])
    with pytest.raises(asyncio.CancelledError):
        await joins[0]
    await layer.group_send_many([(f"queued{i}", {"type": "x", "n": i}) for i in (1, 2)])
    assert [(await asyncio.wait_for(layer.receive(c), 5))["n"] for c in channels[1:]] == [1, 2]
    await layer.flush()
