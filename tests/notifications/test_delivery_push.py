"""notifications.delivery's hand-off from the writer thread to the Redis layer,
against real redis-servers: a push reaches its groups; a push whose write
fails is counted as dropped once, and logged."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from channels.layers import channel_layers

from notifications import delivery, metrics
from notifications.channel_layer import RedisNotifyLayer
from tests.support.servers import RedisServer


@pytest.fixture
def second_redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def _use(layer: RedisNotifyLayer) -> Any:
    return channel_layers.set("default", layer)


def _push_from_a_thread(users: list[str]) -> None:
    """As the writer thread does after a commit."""
    pushes = [(user, {"id": "1", "type": "t"}) for user in users]
    thread = threading.Thread(
        target=delivery.push_notifications, args=(pushes,), kwargs={"committed_at": 0.0}
    )
    thread.start()
    thread.join()


def _dropped() -> float:
    value: float = metrics.DROPPED._value.get()
    return value


def _idle(shard: Any) -> bool:
    publishes = shard._publishes
    return publishes._pending is None and (publishes._task is None or publishes._task.done())


async def _until(predicate: Any, what: str) -> None:
    for _ in range(6000):  # 30 s
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"not within 30 s: {what}")


async def test_a_push_from_the_writer_reaches_each_group(redis_server: RedisServer) -> None:
    layer = RedisNotifyLayer(hosts=[{"address": redis_server.url}], prefix=uuid.uuid4().hex[:8])
    old = _use(layer)
    delivery.bind_loop(asyncio.get_running_loop())
    try:
        users = ["a", "b", "c"]
        got: list[dict[str, Any]] = []
        for user in users:
            await layer.group_add(delivery.group_name(user), layer.new_direct_channel(got.append))
        dropped = _dropped()
        _push_from_a_thread(users)
        await _until(lambda: len(got) == 3, "the three messages")
        assert sorted(m["user"] for m in got) == users
        assert _dropped() == dropped
    finally:
        await layer.flush()
        channel_layers.set("default", old)


async def test_a_failed_write_counts_the_push_dropped_once(
    fresh_redis_server: RedisServer,
    second_redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two shards, one of them down: the push's messages are counted as
    dropped once (not once per shard), with a WARNING line."""
    hosts = [{"address": fresh_redis_server.url}, {"address": second_redis_server.url}]
    layer = RedisNotifyLayer(hosts=hosts, prefix=uuid.uuid4().hex[:8])
    old = _use(layer)
    delivery.bind_loop(asyncio.get_running_loop())
    users = [f"user-{i}" for i in range(16)]  # on both shards
    loop_layer = layer._get_layer()
    channels = [loop_layer._get_group_channel_name(delivery.group_name(u)) for u in users]
    assert len({id(loop_layer._get_shard(c)) for c in channels}) == 2
    fresh_redis_server.stop()
    try:
        dropped = _dropped()
        with caplog.at_level(logging.WARNING, logger="notifications.delivery"):
            _push_from_a_thread(users)
            await _until(lambda: _dropped() > dropped, "the push to be counted dropped")
            # Both shards' writes over, and their outcomes' callbacks run.
            await _until(lambda: all(_idle(s) for s in loop_layer._shards), "both writes")
            for _ in range(3):
                await asyncio.sleep(0)
        assert _dropped() == dropped + len(users)
        failures = [r for r in caplog.records if "push failed" in r.getMessage()]
        assert len(failures) == 1
        assert failures[0].exc_info is not None
    finally:
        fresh_redis_server.start()
        await layer.flush()
        channel_layers.set("default", old)
