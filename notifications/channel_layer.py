"""The channel layers this service runs on, each with a batched group send.

``RedisNotifyLayer`` is channels-redis's pub/sub layer (one Redis PUBLISH per
group message, no per-process inbox to overflow, see docs/operations.md for
the measurement against ``RedisChannelLayer``) plus ``group_send_many``,
which pipelines the PUBLISHes of a whole batch: one round trip per shard
instead of one per recipient. It uses channels-redis internals
(``_get_shard``, ``_ensure_redis``), so channels-redis is pinned exactly.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from channels.layers import InMemoryChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

GroupMessage = tuple[str, dict[str, Any]]


class InMemoryNotifyLayer(InMemoryChannelLayer):  # type: ignore[misc]
    """The one-process layer (no REDIS_URL)."""

    async def group_send_many(self, messages: Sequence[GroupMessage]) -> None:
        for group, message in messages:
            await self.group_send(group, message)

    async def health(self) -> str | None:
        return None


class RedisNotifyLayer(RedisPubSubChannelLayer):  # type: ignore[misc]
    # Declared here: the base class only answers through a per-loop proxy,
    # which needs a running loop, and start-up checks read this without one.
    extensions = ("groups", "flush")

    async def group_send_many(self, messages: Sequence[GroupMessage]) -> None:
        layer = self._get_layer()
        by_shard: dict[Any, list[tuple[str, bytes]]] = defaultdict(list)
        for group, message in messages:
            channel = layer._get_group_channel_name(group)
            by_shard[layer._get_shard(channel)].append((channel, self.serialize(message)))
        await asyncio.gather(*(_publish_all(shard, items) for shard, items in by_shard.items()))

    async def health(self) -> str | None:
        """None when every shard answers PING and the subscriber task runs."""
        layer = self._get_layer()
        for shard in layer._shards:
            async with shard._lock:
                shard._ensure_redis()
                redis = shard._redis
            try:
                await asyncio.wait_for(redis.ping(), timeout=2)
            except Exception as exc:
                return f"redis {shard.host.get('address', shard.host)!s}: {exc!r}"[:300]
            task = shard._receive_task
            if task is not None and task.done():
                return "subscriber task stopped"
        return None


async def _publish_all(shard: Any, items: list[tuple[str, bytes]]) -> None:
    async with shard._lock:
        shard._ensure_redis()
        pipe = shard._redis.pipeline(transaction=False)
        for channel, data in items:
            pipe.publish(channel, data)
        await pipe.execute()
