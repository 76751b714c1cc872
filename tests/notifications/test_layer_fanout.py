"""The standalone layer's fan-out path against a real redis-server: packed
PUBLISHes (notifications/redis_publish.py), batches sharing a write, and the
subscriber's reads (notifications/subscriber_reads.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from redis.exceptions import ResponseError

from notifications.channel_layer import RedisNotifyLayer
from notifications.shard_connection import subscriber_lost_listeners
from tests.support.servers import RedisServer


def layer_for(*urls: str) -> RedisNotifyLayer:
    return RedisNotifyLayer(
        hosts=[{"address": url} for url in urls], prefix=f"t{uuid.uuid4().hex[:8]}"
    )


def publish_calls(server: RedisServer) -> int:
    with server.client() as client:
        stats = client.info("commandstats")
    return int(stats.get("cmdstat_publish", {}).get("calls", 0))


async def test_sends_queued_together_arrive_whole_once_and_in_order(
    fresh_redis_server: RedisServer,
) -> None:
    layer = layer_for(fresh_redis_server.url)
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    before = publish_calls(fresh_redis_server)
    # 30 sends of 10 messages each, queued in one loop iteration: they share
    # writes, and each send's outcome still reaches its caller.
    sends = [
        layer.group_send_many([("g", {"type": "x", "n": s * 10 + i}) for i in range(10)])
        for s in range(30)
    ]
    assert await asyncio.gather(*sends) == [None] * 30
    got = [(await asyncio.wait_for(layer.receive(channel), 5))["n"] for _ in range(300)]
    assert got == list(range(300))
    assert publish_calls(fresh_redis_server) - before == 300
    await layer.flush()


async def test_payloads_holding_resp_bytes_and_large_ones_arrive_intact(
    redis_server: RedisServer,
) -> None:
    layer = layer_for(redis_server.url)
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    odd = "\r\n*3\r\n$7\r\nPUBLISH\r\n$-1\r\n" * 3
    big = "x" * 300_000  # over redis-py's 6,000-byte chunking, and a socket buffer
    await layer.group_send_many([("g", {"type": "x", "s": odd}), ("g", {"type": "x", "s": big})])
    assert (await asyncio.wait_for(layer.receive(channel), 5))["s"] == odd
    assert (await asyncio.wait_for(layer.receive(channel), 5))["s"] == big
    await layer.flush()


@pytest.fixture
def acl_server() -> Iterator[RedisServer]:
    """A private Redis with a user that may subscribe but, for now, not publish."""
    with RedisServer() as server, server.client() as client:
        client.execute_command(
            "ACL", "SETUSER", "pub", "on", ">pw", "~*", "&*", "+@all", "-publish"
        )
        yield server


async def test_error_replies_fail_the_send_and_leave_the_connection_in_step(
    acl_server: RedisServer,
) -> None:
    layer = layer_for(f"redis://pub:pw@127.0.0.1:{acl_server.port}/0")
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    with pytest.raises(ResponseError, match="no permissions"):
        await layer.group_send_many([("g", {"type": "x", "n": i}) for i in range(5)])
    with acl_server.client() as client:
        client.execute_command("ACL", "SETUSER", "pub", "+publish")
    # The five error replies were all read: the next send's replies are its own.
    await layer.group_send_many([("g", {"type": "x", "n": 5}), ("g", {"type": "x", "n": 6})])
    got = [(await asyncio.wait_for(layer.receive(channel), 5))["n"] for _ in range(2)]
    assert got == [5, 6]
    await layer.flush()


async def test_a_send_after_redis_came_back_reconnects(fresh_redis_server: RedisServer) -> None:
    layer = layer_for(fresh_redis_server.url)
    channel_name = layer._get_layer()._get_group_channel_name("g")
    await layer.group_send_many([("g", {"type": "x", "n": 0})])  # the pool holds a connection
    fresh_redis_server.stop()
    fresh_redis_server.start()
    with fresh_redis_server.client() as client, client.pubsub() as watcher:
        watcher.subscribe(channel_name)
        assert watcher.get_message(timeout=5)["type"] == "subscribe"
        # The pooled connection is dead; the send reconnects and goes through.
        await layer.group_send_many([("g", {"type": "x", "n": 1})])
        message = watcher.get_message(timeout=5)
        assert message is not None and layer.deserialize(message["data"])["n"] == 1
    await layer.flush()


async def test_a_burst_read_at_once_reaches_each_group_in_order(redis_server: RedisServer) -> None:
    layer = layer_for(redis_server.url)
    groups = [f"burst{i}" for i in range(20)]
    channels = {g: await layer.new_channel() for g in groups}
    await asyncio.gather(*(layer.group_add(g, c) for g, c in channels.items()))
    # 2,000 messages written by another client in one go: the subscriber
    # takes many replies from each read.
    loop_layer = layer._get_layer()
    items = [
        (loop_layer._get_group_channel_name(g), layer.serialize({"type": "x", "g": g, "n": n}))
        for n in range(100)
        for g in groups
    ]
    with redis_server.client() as client:
        pipe = client.pipeline(transaction=False)
        for channel_name, data in items:
            pipe.publish(channel_name, data)
        assert pipe.execute() == [1] * len(items)
    for group, channel in channels.items():
        got = [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(100)]
        assert [(m["g"], m["n"]) for m in got] == [(group, n) for n in range(100)]
    await layer.flush()


async def test_the_subscriber_goes_idle_when_its_last_group_is_left_and_reads_again_after(
    redis_server: RedisServer,
) -> None:
    layer = layer_for(redis_server.url)
    first, second = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", first)
    await layer.group_send_many([("g", {"type": "x", "n": 1})])
    assert (await asyncio.wait_for(layer.receive(first), 5))["n"] == 1
    await layer.group_discard("g", first)
    shard = layer._get_layer()._shards[0]
    async with asyncio.timeout(5):  # the unsubscribe confirmation went through redis-py
        while shard._pubsub.subscribed:
            await asyncio.sleep(0.01)
    await layer.group_add("h", second)
    await layer.group_send_many([("h", {"type": "x", "n": 2})])
    assert (await asyncio.wait_for(layer.receive(second), 5))["n"] == 2
    await layer.flush()


async def test_a_killed_subscriber_connection_tells_the_listeners(
    fresh_redis_server: RedisServer,
) -> None:
    layer = layer_for(fresh_redis_server.url)
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    told = asyncio.Event()

    async def listener() -> None:
        told.set()

    subscriber_lost_listeners.append(listener)
    try:
        with fresh_redis_server.client() as client:
            assert client.execute_command("CLIENT", "KILL", "TYPE", "pubsub") == 1
        await asyncio.wait_for(told.wait(), 10)
    finally:
        subscriber_lost_listeners.remove(listener)
    await layer.flush()


async def test_a_failed_write_fails_every_send_that_shared_it(acl_server: RedisServer) -> None:
    layer = layer_for(f"redis://pub:pw@127.0.0.1:{acl_server.port}/0")
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    # Three senders in one loop iteration: one write for their PUBLISHes.
    results = await asyncio.gather(
        *(layer.group_send_many([("g", {"type": "x", "n": i})]) for i in range(3)),
        return_exceptions=True,
    )
    assert isinstance(results[0], ResponseError), results
    assert results[1] is results[0] and results[2] is results[0]  # the one write's outcome
    await layer.flush()
