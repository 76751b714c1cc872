"""Which master each sharded channel is subscribed on, kept in step with the slot map.

``ClusterSubscriber`` holds the channels this process wants (``wanted``) and
where each is subscribed. Channels are grouped per master: one
:class:`~notifications.sharded_pubsub.NodeSubscriber` connection per node.
A background check refreshes the slot map every few seconds, and at once
when a node drops a channel or its connection; a channel found on a node
that no longer owns its slot is unsubscribed there and subscribed on the
owner, and reported as lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.exceptions import RedisError

from notifications.sharded_pubsub import (
    CHECK_INTERVAL,
    CONNECT_TIMEOUT,
    NodeSubscriber,
    OnLost,
    OnMessage,
)
from notifications.slot_map import Address, SlotMap, slot_of

logger = logging.getLogger(__name__)

# How soon an unplaced channel (its master down, no replica promoted yet) is retried.
RETRY_INTERVAL = 0.5
PLACE_ATTEMPTS = 3


class ClusterSubscriber:
    def __init__(self, url: str, on_message: OnMessage, on_lost: OnLost) -> None:
        self.slots = SlotMap(url, timeout=CONNECT_TIMEOUT)
        self.wanted: set[str] = set()
        self.where: dict[str, NodeSubscriber] = {}
        self.nodes: dict[Address, NodeSubscriber] = {}
        self._on_message = on_message
        self._on_lost = on_lost
        self._lost: set[str] = set()
        self._placing: set[str] = set()  # joins subscribing right now
        self._connecting = asyncio.Lock()
        self._check_now = asyncio.Event()
        self._checker: asyncio.Task[None] | None = None
        self._refreshed_at = 0.0

    # -- what the layer asks --------------------------------------------------

    async def add(self, channel: str) -> None:
        """Subscribe (on the owner of its slot); raises when no master takes it."""
        self.wanted.add(channel)
        if self._checker is None or self._checker.done():
            self._checker = asyncio.ensure_future(self._check_forever())
        if channel not in self.where:
            self._placing.add(channel)
            try:
                await self._place(channel)
            finally:
                self._placing.discard(channel)

    async def discard(self, channel: str) -> None:
        self.wanted.discard(channel)
        node = self.where.pop(channel, None)
        if node is not None and not node.closed:
            with contextlib.suppress(RedisError):
                await node.unsubscribe(channel)

    def problem(self) -> str | None:
        """None while the check runs and every wanted channel is subscribed
        (or being subscribed by a join right now)."""
        if self._checker is not None and self._checker.done():
            return "cluster subscriber check stopped"
        unplaced = len(self.wanted - self.where.keys() - self._placing)
        return f"{unplaced} channels not subscribed" if unplaced else None

    async def close(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
        for node in list(self.nodes.values()):
            await node.close()
        self.nodes, self.where, self.wanted = {}, {}, set()

    # -- placing channels -----------------------------------------------------

    async def _place(self, channel: str) -> None:
        error: BaseException | None = None
        for _ in range(PLACE_ATTEMPTS):
            try:
                node = await self._node_for(channel)
                await node.subscribe(channel)
            except (RedisError, OSError, TimeoutError) as exc:
                error = exc  # MOVED, a dead node, a stale map: refresh and retry
                await self._refresh(force=True)
                continue
            if channel in self.wanted:
                self.where[channel] = node
            else:  # discarded while subscribing
                with contextlib.suppress(RedisError):
                    await node.unsubscribe(channel)
            return
        assert error is not None
        raise error

    async def _node_for(self, channel: str) -> NodeSubscriber:
        address = self.slots.owner(slot_of(channel))
        if address is None:
            await self._refresh(force=True)
            address = self.slots.owner(slot_of(channel))
            if address is None:
                raise RedisError("the Redis Cluster slot map is not known yet")
        sub = self.nodes.get(address)
        if sub is None or sub.closed:
            async with self._connecting:
                sub = self.nodes.get(address)
                if sub is None or sub.closed:
                    sub = NodeSubscriber(address, self.slots, self._on_message, self._dropped)
                    await sub.start()
                    self.nodes[address] = sub
        return sub

    def _dropped(self, node: NodeSubscriber, channels: set[str]) -> None:
        """A node unsubscribed these channels, or its connection broke."""
        if node.closed and self.nodes.get(node.address) is node:
            del self.nodes[node.address]
        for channel in channels:
            if self.where.get(channel) is node:
                del self.where[channel]
        self._lost |= channels & self.wanted
        self._check_now.set()

    async def _refresh(self, *, force: bool = False) -> None:
        """Reload the slot map (at most every 0.2 s, however many ask)."""
        if time.monotonic() - self._refreshed_at < 0.2 and not force:
            return
        self._refreshed_at = time.monotonic()
        try:
            await self.slots.refresh()
        except (RedisError, OSError) as exc:
            logger.warning("Redis Cluster slot map refresh failed: %r", exc)

    # -- the check --------------------------------------------------------------

    async def _check_forever(self) -> None:
        while True:
            wait = RETRY_INTERVAL if self.wanted - self.where.keys() else CHECK_INTERVAL
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._check_now.wait(), wait)
            self._check_now.clear()
            try:
                await self._check()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("Redis Cluster subscription check failed", exc_info=True)

    async def _check(self) -> None:
        await self._refresh()
        for channel, node in list(self.where.items()):
            if node.closed or node.address != self.slots.owner(slot_of(channel)):
                # Never stay subscribed where the slot no longer is.
                del self.where[channel]
                self._lost.add(channel)
                if not node.closed:
                    with contextlib.suppress(RedisError):
                        await node.unsubscribe(channel)
        lost, self._lost = self._lost & self.wanted, set()
        if lost:
            logger.warning("Redis Cluster: %d channels moved or lost; resubscribing", len(lost))
            await self._on_lost(lost)
        for channel in self.wanted - self.where.keys():
            try:
                await self._place(channel)
            except (RedisError, OSError, TimeoutError) as exc:
                logger.info("Redis Cluster: channel not subscribed yet (%r)", exc)
                return
