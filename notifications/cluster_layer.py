"""The channel layer on a Redis Cluster (REDIS_CLUSTER_URL): sharded pub/sub.

A group is the sharded channel ``<prefix>:{<group>}``; the hash tag is the
group name (``u.<digest>`` per user), the same tag presence keys carry, so one
user's channel and keys share a slot. Messages go out with ``SPUBLISH``, in
one pipeline per master; subscriptions are kept by
:class:`~notifications.cluster_subscriber.ClusterSubscriber`, one connection
per master.

A group whose subscription was lost (slot moved, master failed over) may
have missed messages: ``groups_lost_listeners`` are told which groups, and
the service closes those sockets (1012) for their clients to resume with
``since``. A push that fails is retried for ``PUBLISH_RETRY_SECONDS`` (a
failover promotes a replica within the node timeout), then dropped and
counted: the notification is in the database either way.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from channels_redis.serializers import registry
from redis.asyncio.cluster import ClusterNode

from notifications import redis_cluster
from notifications.cluster_subscriber import ClusterSubscriber

logger = logging.getLogger(__name__)

GroupMessage = tuple[str, dict[str, Any]]
Deliver = Callable[[dict[str, Any]], None]
PUBLISH_RETRY_SECONDS = 10.0

# Told the layer group names whose subscription was lost (see the module doc).
groups_lost_listeners: list[Callable[[set[str]], Awaitable[None]]] = []


class _LoopState:
    """What one event loop holds: the client, the subscriber, local channels."""

    def __init__(self, layer: ClusterNotifyLayer) -> None:
        self.layer = layer
        self.client = redis_cluster.async_client(layer.url)
        self.subscriber = ClusterSubscriber(layer.url, self.on_message, self.on_lost)
        self.channels: dict[str, Deliver | asyncio.Queue[dict[str, Any]]] = {}
        self.groups: dict[str, set[str]] = {}  # sharded channel -> local channels

    def on_message(self, channel: str, data: bytes) -> None:
        members = self.groups.get(channel)
        if not members:
            return
        try:
            message = self.layer.deserialize(data)
        except Exception:
            logger.exception("undecodable message on %s", channel)
            return
        for name in list(members):
            target = self.channels.get(name)
            try:
                if isinstance(target, asyncio.Queue):
                    target.put_nowait(message)
                elif target is not None:
                    target(message)
            except Exception:
                # Never into the subscriber's reader: one consumer's error
                # must not look like a broken connection.
                logger.exception("delivering a layer message failed")

    async def on_lost(self, channels: set[str]) -> None:
        groups = {self.layer.group_of(channel) for channel in channels}
        for listener in list(groups_lost_listeners):
            try:
                await listener(groups)
            except Exception:
                logger.exception("groups-lost listener failed")


class ClusterNotifyLayer:
    extensions = ("groups", "flush")

    def __init__(self, url: str, prefix: str = "notify", **_ignored: Any) -> None:
        self.url = url
        self.prefix = prefix
        self._serializer = registry.get_serializer("msgpack", symmetric_encryption_keys=None)
        self._states: dict[asyncio.AbstractEventLoop, _LoopState] = {}

    def serialize(self, message: dict[str, Any]) -> bytes:
        data: bytes = self._serializer.serialize(message)
        return data

    def deserialize(self, data: bytes) -> dict[str, Any]:
        message: dict[str, Any] = self._serializer.deserialize(data)
        return message

    def sharded_channel(self, group: str) -> str:
        return f"{self.prefix}:{{{group}}}"

    def group_of(self, channel: str) -> str:
        return channel[len(self.prefix) + 2 : -1]

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            self._states = {lp: s for lp, s in self._states.items() if not lp.is_closed()}
            state = self._states[loop] = _LoopState(self)
        return state

    # -- this process's channels -------------------------------------------

    def new_direct_channel(self, deliver: Deliver) -> str:
        channel = f"{self.prefix}.specific.{uuid.uuid4().hex}"
        self._state().channels[channel] = deliver
        return channel

    def drop_direct_channel(self, channel: str) -> None:
        self._state().channels.pop(channel, None)

    async def new_channel(self, prefix: str = "specific.") -> str:
        channel = f"{self.prefix}.{prefix}{uuid.uuid4().hex}"
        self._state().channels[channel] = asyncio.Queue()
        return channel

    async def receive(self, channel: str) -> dict[str, Any]:
        target = self._state().channels.get(channel)
        if not isinstance(target, asyncio.Queue):
            raise RuntimeError(f"{channel!r} is not a receiving channel of this process")
        return await target.get()

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Only to a channel of this process (the service sends to groups)."""
        target = self._state().channels.get(channel)
        if isinstance(target, asyncio.Queue):
            target.put_nowait(message)
        elif target is not None:
            target(message)

    # -- groups --------------------------------------------------------------

    async def group_add(self, group: str, channel: str) -> None:
        state = self._state()
        sharded = self.sharded_channel(group)
        state.groups.setdefault(sharded, set()).add(channel)
        try:
            await state.subscriber.add(sharded)
        except Exception:
            await self.group_discard(group, channel)
            raise

    async def group_discard(self, group: str, channel: str) -> None:
        state = self._state()
        sharded = self.sharded_channel(group)
        members = state.groups.get(sharded)
        if members is None or channel not in members:
            return
        members.discard(channel)
        if not members:
            del state.groups[sharded]
            await state.subscriber.discard(sharded)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        await self.group_send_many([(group, message)])

    async def group_send_many(self, messages: Sequence[GroupMessage]) -> None:
        """SPUBLISH the batch: one pipeline per master, each retried on its own."""
        client = self._state().client
        if not client.nodes_manager.slots_cache:
            await client.initialize()
        by_node: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
        for group, message in messages:
            channel = self.sharded_channel(group)
            node: ClusterNode = client.nodes_manager.get_node_from_slot(client.keyslot(channel))
            by_node[node.name].append((channel, self.serialize(message)))
        results = await asyncio.gather(
            *(_publish(client, items) for items in by_node.values()), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def flush(self) -> None:
        state = self._states.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.subscriber.close()
            await state.client.aclose()

    async def health(self) -> str | None:
        """None when every master answers PING and every group is subscribed."""
        state = self._state()
        try:
            if not state.client.nodes_manager.slots_cache:
                await state.client.initialize()
            await asyncio.wait_for(redis_cluster.ping_primaries(state.client), 2)
        except Exception as exc:
            return f"redis cluster: {exc!r}"[:300]
        return state.subscriber.problem()


async def _publish(client: redis_cluster.BoundedCluster, items: list[tuple[str, bytes]]) -> None:
    deadline = time.monotonic() + PUBLISH_RETRY_SECONDS
    while True:
        try:
            pipe = client.pipeline(transaction=False)
            for channel, data in items:
                pipe.execute_command("SPUBLISH", channel, data)
            await pipe.execute()
            return
        except Exception as exc:  # RedisError, or a connection closed under it
            if time.monotonic() > deadline:
                raise
            # The client refreshes its slot map itself on MOVED and lost nodes.
            logger.info("SPUBLISH of %d messages failed (%r); retrying", len(items), exc)
            await asyncio.sleep(0.5)
