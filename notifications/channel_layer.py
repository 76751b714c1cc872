"""The channel layers this service runs on, each with a batched group send.

``RedisNotifyLayer`` is channels-redis's pub/sub layer (one Redis PUBLISH per
group message, no per-process inbox to overflow; docs/operations.md keeps
the measurement against channels-redis's list-based ``RedisChannelLayer``) plus ``group_send_many``,
which packs the PUBLISHes of a whole batch into one write per shard
(notifications/redis_publish.py; batches queued meanwhile share it) instead
of a round trip per recipient. It uses channels-redis internals
(``_get_shard``, ``_ensure_redis``), so channels-redis is pinned exactly.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from copy import deepcopy
from typing import Any

from channels.layers import InMemoryChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer
from channels_redis.utils import _wrap_close

from notifications.redis_publish import pack_publish
from notifications.shard_connection import ResettingShardConnection, subscriber_lost_listeners

logger = logging.getLogger(__name__)

GroupMessage = tuple[str, dict[str, Any]]
# Called with each message of a direct channel, synchronously, as it arrives.
Deliver = Callable[[dict[str, Any]], None]

__all__ = ["InMemoryNotifyLayer", "RedisNotifyLayer", "subscriber_lost_listeners"]


class _DirectChannel:
    """Stands in for the per-channel ``asyncio.Queue`` of channels-redis: the
    subscriber hands each message straight to the consumer (no queue, no
    receiving task per socket).

    The subscriber calls ``put_nowait`` once per channel of the group with the
    same bytes, so the last decoded message is shared between them (the
    consumers only read it).
    """

    __slots__ = ("deliver", "layer")

    def __init__(self, layer: ResettingLoopLayer, deliver: Deliver) -> None:
        self.layer = layer
        self.deliver = deliver

    def put_nowait(self, data: bytes) -> None:
        layer = self.layer
        try:
            message = layer._last_message
            if layer._last_data is not data or message is None:
                message = layer._last_message = layer.channel_layer.deserialize(data)
                layer._last_data = data
            self.deliver(message)
        except Exception:
            # Never into the subscriber loop: it would take the error for a
            # broken connection and close every socket.
            logger.exception("delivering a layer message failed")


class ResettingLoopLayer(RedisPubSubLoopLayer):  # type: ignore[misc]
    _shards: list[Any]
    channels: dict[str, Any]
    _last_data: bytes | None = None
    _last_message: dict[str, Any] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        shards: list[Any] = self._shards
        self._shards = [ResettingShardConnection(shard.host, self) for shard in shards]

    async def new_channel(self, prefix: str = "specific.") -> str:
        """A consumer's own channel, local to this process.

        This service only sends to groups (one per user), never to a
        consumer's own channel, so that channel needs no Redis subscription:
        one SUBSCRIBE less per socket, and less memory in the subscriber.
        """
        channel = f"{self.prefix}{prefix}{uuid.uuid4().hex}"
        self.channels[channel] = asyncio.Queue()
        return channel

    def new_direct_channel(self, deliver: Deliver) -> str:
        """A consumer's own channel whose messages go to ``deliver`` (see _DirectChannel)."""
        channel = f"{self.prefix}specific.{uuid.uuid4().hex}"
        self.channels[channel] = _DirectChannel(self, deliver)
        return channel

    def drop_direct_channel(self, channel: str) -> None:
        self.channels.pop(channel, None)


class InMemoryNotifyLayer(InMemoryChannelLayer):  # type: ignore[misc]
    """The one-process layer (no REDIS_URL)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._direct: dict[str, Deliver] = {}

    def new_direct_channel(self, deliver: Deliver) -> str:
        channel = f"specific.inmemory!{uuid.uuid4().hex}"
        self._direct[channel] = deliver
        return channel

    def drop_direct_channel(self, channel: str) -> None:
        self._direct.pop(channel, None)

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        deliver = self._direct.get(channel)
        if deliver is None:
            await super().send(channel, message)
            return
        try:
            deliver(deepcopy(message))  # a copy, as a serializing layer would give
        except Exception:
            logger.exception("delivering a layer message failed")

    async def flush(self) -> None:
        await super().flush()
        self._direct = {}

    async def group_send_many(self, messages: Sequence[GroupMessage]) -> None:
        for group, message in messages:
            await self.group_send(group, message)

    async def health(self) -> str | None:
        return None


class RedisNotifyLayer(RedisPubSubChannelLayer):  # type: ignore[misc]
    # Declared here: the base class only answers through a per-loop proxy,
    # which needs a running loop, and start-up checks read this without one.
    extensions = ("groups", "flush")

    def new_direct_channel(self, deliver: Deliver) -> str:
        channel: str = self._get_layer().new_direct_channel(deliver)
        return channel

    def drop_direct_channel(self, channel: str) -> None:
        self._get_layer().drop_direct_channel(channel)

    def _get_layer(self) -> Any:
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = ResettingLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            _wrap_close(self, loop)
        return layer

    async def group_send_many(self, messages: Sequence[GroupMessage]) -> None:
        outcomes = self.group_send_soon(asyncio.get_running_loop(), messages)
        if len(outcomes) == 1:  # no task of its own for the one shard
            await asyncio.shield(outcomes[0])
            return
        await asyncio.gather(*(asyncio.shield(outcome) for outcome in outcomes))

    def group_send_soon(
        self, loop: asyncio.AbstractEventLoop, messages: Sequence[GroupMessage]
    ) -> list[asyncio.Future[None]]:
        """Queue the PUBLISHes of ``messages`` for each shard's next write,
        on ``loop`` (the running one); the outcome of each shard's write."""
        layer = self._layers.get(loop) or self._get_layer()
        by_shard: dict[Any, list[bytes]] = defaultdict(list)
        serialize = self.serialize
        for group, message in messages:
            channel = layer._get_group_channel_name(group)
            packed = pack_publish(channel.encode(), serialize(message))
            by_shard[layer._get_shard(channel)].append(packed)
        return [
            shard.publish_soon(loop, b"".join(parts), len(parts))
            for shard, parts in by_shard.items()
        ]

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
