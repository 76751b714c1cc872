"""The standalone Redis layer's shard connection: batched SUBSCRIBEs and
PUBLISHes, a subscriber that reads every message a read brought at once, and
starts afresh on a broken connection (channel_layer.py builds its per-loop
layer on it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels_redis.pubsub import RedisSingleShardConnection
from channels_redis.utils import _close_redis

from notifications.redis_publish import publish_packed
from notifications.subscriber_reads import read_messages

logger = logging.getLogger(__name__)

# Called when a shard's subscriber connection breaks. Subscriptions made
# before the break may be gone, so the sockets that rely on them must
# reconnect (and resume with since) rather than stay open and deaf.
subscriber_lost_listeners: list[Callable[[], Awaitable[None]]] = []


class _Subscribes:
    """Channels waiting for the shard's next SUBSCRIBE, and its outcome."""

    __slots__ = ("channels", "done")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.channels: dict[str, None] = {}
        self.done: asyncio.Future[None] = loop.create_future()


class _Publishes:
    """PUBLISHes (packed) waiting for the shard's next write, and its outcome."""

    __slots__ = ("count", "done", "parts")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.parts: list[bytes] = []
        self.count = 0
        self.done: asyncio.Future[None] = loop.create_future()


class ResettingShardConnection(RedisSingleShardConnection):  # type: ignore[misc]
    """A shard whose subscriber, on a broken connection, starts afresh, and
    whose SUBSCRIBEs are batched.

    channels-redis logs the error and keeps polling the broken PubSub; here
    the connection is dropped, its subscriptions forgotten, and listeners
    told, so that every socket relying on it is closed for its client to
    reconnect once Redis is back.

    channels-redis sends one SUBSCRIBE (a command and a write) per group
    joined: in a reconnect storm, a fifth of the event loop's time
    (docs/performance.md, "Handshakes"). Here the groups joined while a
    SUBSCRIBE is being sent, or in the same loop iteration, share the next
    one, and each ``subscribe`` returns once the command naming its channel
    is written, as before: the socket's replay starts after that.
    """

    _redis: Any
    _pubsub: Any
    _subscribed_to: set[str]
    _lock: asyncio.Lock
    _next: _Subscribes | None = None
    _sender: asyncio.Task[None] | None = None
    _outgoing: _Publishes | None = None
    _publisher: asyncio.Task[None] | None = None
    # The connection PUBLISHes go out on, out of the client's pool (and the
    # pool): kept, since a checkout probes the socket for unread data first.
    _publishing: tuple[Any, Any] | None = None

    async def publish_many(self, packed: bytes, count: int) -> None:
        """Publish ``count`` packed PUBLISHes (redis_publish.pack_publishes).

        Batches queued while a write is in flight (or in the same loop
        iteration) share the next write and its read: one syscall each way
        for all of them. They go out in the order they were queued, which is
        commit order (delivery.py hands them over in that order), and each
        caller learns its batch's outcome.
        """
        await asyncio.shield(self.publish_soon(asyncio.get_running_loop(), packed, count))

    def publish_soon(
        self, loop: asyncio.AbstractEventLoop, packed: bytes, count: int
    ) -> asyncio.Future[None]:
        """``publish_many`` without a coroutine of the caller's: queues the
        PUBLISHes for the next write and returns that write's outcome (shared
        with everything queued with them: callers only read it). The
        delivery of a commit group takes this path (delivery.py): no task
        per group."""
        batch = self._outgoing
        if batch is None:
            batch = self._outgoing = _Publishes(loop)
            self._publisher = loop.create_task(self._publish_next())
        batch.parts.append(packed)
        batch.count += count
        return batch.done

    async def _publish_next(self) -> None:
        async with self._lock:
            batch, self._outgoing = self._outgoing, None
            if batch is None:
                return
            try:
                await publish_packed(
                    await self._publishing_connection(), b"".join(batch.parts), batch.count
                )
            except asyncio.CancelledError:
                batch.done.cancel()
                raise
            except Exception as exc:
                batch.done.set_exception(exc)
                batch.done.exception()  # retrieved: nobody may be waiting any more
            else:
                batch.done.set_result(None)

    async def subscribe(self, channel: str) -> None:
        batch = self._next
        if batch is None:
            batch = self._next = _Subscribes(asyncio.get_running_loop())
            self._sender = asyncio.ensure_future(self._subscribe_next())
        batch.channels[channel] = None
        # Shielded: a socket closed meanwhile must not cancel the others' command.
        await asyncio.shield(batch.done)

    async def _subscribe_next(self) -> None:
        async with self._lock:
            batch, self._next = self._next, None
            if batch is None:
                return
            try:
                new = [c for c in batch.channels if c not in self._subscribed_to]
                if new:
                    self._ensure_redis()
                    self._ensure_receiver()
                    await self._pubsub.subscribe(*new)
                    self._subscribed_to.update(new)
            except asyncio.CancelledError:
                batch.done.cancel()
                raise
            except Exception as exc:
                batch.done.set_exception(exc)
                batch.done.exception()  # retrieved: nobody may be waiting any more
            else:
                batch.done.set_result(None)

    async def _publishing_connection(self) -> Any:
        """Under the lock: the pool's connection kept for PUBLISHes (a new
        one when the client was replaced after a break)."""
        self._ensure_redis()
        pool = self._redis.connection_pool
        kept = self._publishing
        if kept is None or kept[0] is not pool:
            kept = self._publishing = (pool, await pool.get_connection())
        return kept[1]

    async def unsubscribe(self, channel: str) -> None:
        async with self._lock:
            # A group emptied and joined again since: its SUBSCRIBE may have
            # found it still subscribed (a batch queued before this call).
            layer = self.channel_layer
            if channel in layer.groups or channel in layer.channels:
                return
            if channel in self._subscribed_to:
                self._ensure_redis()
                self._ensure_receiver()
                await self._pubsub.unsubscribe(channel)
                self._subscribed_to.discard(channel)

    async def _do_receiving(self) -> None:
        while True:
            try:
                pubsub = self._pubsub
                if pubsub and pubsub.subscribed and pubsub.connection is not None:
                    # Until the connection breaks: every message a read
                    # brings, handed on at once (subscriber_reads.py).
                    await read_messages(pubsub, self._receive_data)
                else:
                    await asyncio.sleep(0.1)
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:
                logger.warning("Redis subscriber connection lost: %r", exc)
                await self._forget_connection()
                for listener in list(subscriber_lost_listeners):
                    try:
                        await listener()
                    except Exception:
                        logger.exception("subscriber-lost listener failed")
                await asyncio.sleep(0.5)

    def _receive_data(self, name: bytes, data: bytes) -> None:
        """One message: to the local channels of its group (channels-redis's
        ``_receive_message`` without the dict redis-py builds around it)."""
        layer = self.channel_layer
        channel = name.decode()
        direct = layer.channels.get(channel)
        if direct is not None:
            direct.put_nowait(data)
            return
        members = layer.groups.get(channel)
        if members:
            channels = layer.channels
            for member in list(members):
                target = channels.get(member)
                if target is not None:
                    target.put_nowait(data)

    async def _forget_connection(self) -> None:
        async with self._lock:
            redis, self._redis, self._pubsub = self._redis, None, None
            self._publishing = None  # closed with the client's pool below
            self._subscribed_to = set()
        if redis is not None:
            try:
                await _close_redis(redis)
            except Exception:
                logger.debug("closing the broken Redis connection failed", exc_info=True)
