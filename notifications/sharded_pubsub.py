"""Sharded pub/sub on a Redis Cluster: one subscriber connection per master.

redis-py 7.4's asyncio cluster client has no sharded pub/sub, so this module
keeps its own ``SSUBSCRIBE`` connections (plain redis.asyncio connections),
driven by its own slot map (notifications/slot_map.py). A process
holds one connection per master, whatever the number of channels: channels
are grouped by the node that owns their slot.

Slot moves and failovers are followed. A channel is resubscribed on the
master that owns its slot now when the old one unsubscribes it (Redis 7 does
so when a slot leaves a node), answers ``MOVED``, goes away, or is found not
to own the slot any more by the periodic check of the slot map. Messages
published between the move and the resubscription are lost, so every such
channel is reported to ``on_lost`` (the sockets behind it resume from the
database).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError, ResponseError

from notifications.slot_map import Address, SlotMap

logger = logging.getLogger(__name__)

OnMessage = Callable[[str, bytes], None]
OnLost = Callable[[set[str]], Awaitable[None]]

# How often the slot map is checked when nothing else prompts it, how long a
# silent subscriber connection is trusted, and how long a subscribe may take.
CHECK_INTERVAL = 5.0
PING_INTERVAL = 5.0
REPLY_TIMEOUT = 5.0
CONNECT_TIMEOUT = 3.0


class NodeGone(RedisError):
    """The subscriber connection to a node broke."""


class NodeSubscriber:
    """One ``SSUBSCRIBE`` connection to one master.

    Each command sent waits for its reply in order (a FIFO); an
    ``sunsubscribe`` nobody asked for is the server dropping a channel whose
    slot left this node.
    """

    def __init__(
        self,
        address: Address,
        slots: SlotMap,
        on_message: OnMessage,
        on_dropped: Callable[[NodeSubscriber, set[str]], None],
    ) -> None:
        self.address = address
        self.name = f"{address[0]}:{address[1]}"
        self.channels: set[str] = set()
        self._on_message = on_message
        self._on_dropped = on_dropped
        self._conn = slots.connection(address)
        self._conn.socket_timeout = None  # idle is normal; liveness is the PING below
        self._pending: deque[tuple[str, str | None, asyncio.Future[Any]]] = deque()
        self._write = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.closed = False

    async def start(self) -> None:
        await asyncio.wait_for(self._conn.connect(), CONNECT_TIMEOUT)  # type: ignore[no-untyped-call]
        self._tasks = [
            asyncio.ensure_future(self._read_forever()),
            asyncio.ensure_future(self._ping_forever()),
        ]

    async def _command(self, kind: str, channel: str | None, *args: Any) -> Any:
        if self.closed:
            raise NodeGone(f"subscriber connection to {self.name} is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)  # an answer nobody waits for any more is no error
        async with self._write:
            self._pending.append((kind, channel, future))
            try:
                await self._conn.send_command(*args, check_health=False)
            except Exception as exc:
                await self._fail(exc)
                raise NodeGone(f"{self.name}: {exc!r}") from exc
        try:
            return await asyncio.wait_for(asyncio.shield(future), REPLY_TIMEOUT)
        except TimeoutError:
            await self._fail(TimeoutError(f"no reply from {self.name}"))
            raise NodeGone(f"no reply from {self.name} within {REPLY_TIMEOUT}s") from None

    async def subscribe(self, channel: str) -> None:
        await self._command("ssubscribe", channel, "SSUBSCRIBE", channel)
        self.channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)
        await self._command("sunsubscribe", channel, "SUNSUBSCRIBE", channel)

    async def _ping_forever(self) -> None:
        while True:
            await asyncio.sleep(PING_INTERVAL)
            with contextlib.suppress(NodeGone):
                await self._command("pong", None, "PING")

    async def _read_forever(self) -> None:
        while True:
            try:
                reply = await self._conn.read_response(disconnect_on_error=False)
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:  # MOVED, CLUSTERDOWN...: the oldest command's answer
                if self._pending:
                    _kind, _channel, future = self._pending.popleft()
                    if not future.done():
                        future.set_exception(exc)
                continue
            except Exception as exc:
                await self._fail(exc)
                return
            self._dispatch(reply)

    def _dispatch(self, reply: Any) -> None:
        kind = _text(reply[0]) if isinstance(reply, list) and reply else ""
        channel = _text(reply[1]) if kind != "pong" and len(reply) > 1 else None
        if kind == "smessage" and channel is not None:
            self._on_message(channel, reply[2])
            return
        if self._pending and self._pending[0][:2] == (kind, channel):
            future = self._pending.popleft()[2]
            if not future.done():
                future.set_result(reply)
        elif kind == "sunsubscribe" and channel is not None:
            # The server dropped it: its slot left this node.
            if channel in self.channels:
                self.channels.discard(channel)
                self._on_dropped(self, {channel})
        else:
            logger.debug("unexpected reply on the subscriber of %s: %r", self.name, reply)

    async def _fail(self, exc: BaseException) -> None:
        if self.closed:
            return
        logger.warning("Redis Cluster subscriber connection to %s lost: %r", self.name, exc)
        lost = set(self.channels)
        await self.close()
        self._on_dropped(self, lost)

    async def close(self) -> None:
        self.closed = True
        self.channels = set()
        while self._pending:
            future = self._pending.popleft()[2]
            if not future.done():
                future.set_exception(NodeGone(f"subscriber connection to {self.name} closed"))
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        with contextlib.suppress(Exception):
            await self._conn.disconnect(nowait=True)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
