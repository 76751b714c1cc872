"""The standalone Redis layer's shard connection: batched SUBSCRIBEs and
PUBLISHes, a subscriber that reads every message a read brought at once, and
starts afresh on a broken connection (channel_layer.py builds its per-loop
layer on it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from channels_redis.pubsub import RedisSingleShardConnection
from channels_redis.utils import _close_redis

from notifications.redis_publish import publish_packed
from notifications.subscriber_reads import read_messages

logger = logging.getLogger(__name__)

# Called when a shard's subscriber connection breaks. Subscriptions made
# before the break may be gone, so the sockets that rely on them must
# reconnect (and resume with since) rather than stay open and deaf.
subscriber_lost_listeners: list[Callable[[], Awaitable[None]]] = []


class _Batch:
    """What the callers of one command queued, and its outcome (``done``)."""

    __slots__ = ("done",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.done: asyncio.Future[None] = loop.create_future()


class _Subscribes(_Batch):
    """Channels waiting for the shard's next SUBSCRIBE."""

    __slots__ = ("channels",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.channels: dict[str, None] = {}


class _Publishes(_Batch):
    """PUBLISHes (packed) waiting for the shard's next write."""

    __slots__ = ("count", "parts")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.parts: list[bytes] = []
        self.count = 0


B = TypeVar("B", bound=_Batch)


class _NextCommand(Generic[B]):
    """Callers queued while a command is in flight share the next command.

    The first caller of a batch starts the task that sends it once ``lock``
    is free; whoever comes before that adds to the same batch. Batches go out
    in the order they were started, and every caller of one gets its outcome
    (done, the exception, or cancelled).
    """

    __slots__ = ("_lock", "_new", "_pending", "_send", "_task")

    def __init__(
        self,
        lock: asyncio.Lock,
        new: Callable[[asyncio.AbstractEventLoop], B],
        send: Callable[[B], Awaitable[None]],
    ) -> None:
        self._lock = lock
        self._new = new
        self._send = send
        self._pending: B | None = None
        self._task: asyncio.Task[None] | None = None  # kept: a task only weakly held may vanish

    def batch(self) -> B:
        """The batch the next command sends, to add to (and wait for its ``done``)."""
        batch = self._pending
        if batch is None:
            batch = self._pending = self._new(asyncio.get_running_loop())
            self._task = asyncio.ensure_future(self._send_next())
        return batch

    async def _send_next(self) -> None:
        async with self._lock:
            batch, self._pending = self._pending, None
            if batch is None:
                return
            try:
                await self._send(batch)
            except asyncio.CancelledError:
                batch.done.cancel()
                raise
            except Exception as exc:
                batch.done.set_exception(exc)
                batch.done.exception()  # retrieved: nobody may be waiting any more
            else:
                batch.done.set_result(None)


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
    # The connection PUBLISHes go out on, out of the client's pool (and the
    # pool): kept, since a checkout probes the socket for unread data first.
    _publishing: tuple[Any, Any] | None = None

    def __init__(self, host: Any, channel_layer: Any) -> None:
        super().__init__(host, channel_layer)
        self._publishes = _NextCommand(self._lock, _Publishes, self._write_publishes)
        self._subscribes = _NextCommand(self._lock, _Subscribes, self._write_subscribes)

    async def publish_many(self, packed: bytes, count: int) -> None:
        """Publish ``count`` packed PUBLISHes (redis_publish.pack_publishes).

        Batches queued while a write is in flight (or in the same loop
        iteration) share the next write and its read: one syscall each way
        for all of them. They go out in the order they were queued, which is
        commit order (delivery.py hands them over in that order), and each
        caller learns its batch's outcome.
        """
        batch = self._publishes.batch()
        batch.parts.append(packed)
        batch.count += count
        await asyncio.shield(batch.done)

    async def _write_publishes(self, batch: _Publishes) -> None:
        """Under the lock: one write of every PUBLISH in ``batch``, one read of the replies."""
        await publish_packed(
            await self._publishing_connection(), b"".join(batch.parts), batch.count
        )

    async def subscribe(self, channel: str) -> None:
        batch = self._subscribes.batch()
        batch.channels[channel] = None
        # Shielded: a socket closed meanwhile must not cancel the others' command.
        await asyncio.shield(batch.done)

    async def _write_subscribes(self, batch: _Subscribes) -> None:
        """Under the lock: one SUBSCRIBE of the channels in ``batch`` not subscribed yet."""
        new = [c for c in batch.channels if c not in self._subscribed_to]
        if new:
            self._ensure_redis()
            self._ensure_receiver()
            await self._pubsub.subscribe(*new)
            self._subscribed_to.update(new)

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
