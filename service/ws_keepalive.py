"""The keepalive ping of ``LeanWebSocketProtocol`` (service/ws_protocol.py):
one timer per process instead of two per socket.

uvicorn's ``websockets-sansio`` protocol gives each socket its own ping timer
and, once pinged, its own pong deadline; every ping is built by websockets
with a fresh random payload and every PONG goes through its frame parser. At
10,000 idle sockets that was 3.9 % of a core (docs/performance.md, "An idle
process"). Here a process-wide wheel of ticks (1/20 of the shorter of the
interval and the timeout) visits the sockets that are due, in one batch per
tick: a PING frame built once per wheel is written straight to each
transport, and a PONG carrying its payload only clears a flag.

The behaviour stays uvicorn's, with its flags (``--ws-ping-interval``,
``--ws-ping-timeout``): the first ping one interval after the handshake, the
next one an interval after the last, and a socket whose PONG has not come
within the timeout is closed 1011 ("keepalive ping timeout"). Deadlines are
rounded up to the next tick, so a timeout fires at most one tick (5 %) late,
never early.
"""

from __future__ import annotations

import asyncio
import math
import os
from typing import Any, Protocol

from websockets.protocol import Protocol as WebSocketProtocol
from websockets.streams import StreamReader

# Ticks per the shorter of interval and timeout: how late a ping or a timeout
# may be (one tick), against how often the wheel wakes.
TICKS_PER_PERIOD = 20
PING_OPCODE = 0x9
PAYLOAD_SIZE = 4
# Where websockets' frame parser waits between two frames, and nowhere else.
PARSE_CODE = WebSocketProtocol.parse.__code__
AT_EOF_CODE = StreamReader.at_eof.__code__


def waits_for_frame(parser: Any) -> bool:
    """``parser`` is websockets' frame parser (``Protocol.parse``), waiting for
    the first byte of a frame: a read that is exactly a PONG is one there (and
    its reader's buffer is empty, which the caller checks)."""
    return (
        getattr(parser, "gi_code", None) is PARSE_CODE
        and getattr(parser.gi_yieldfrom, "gi_code", None) is AT_EOF_CODE
    )


class Pinged(Protocol):
    """What the wheel needs from a socket (``LeanWebSocketProtocol``)."""

    keepalive_tick: int
    keepalive_pinged: int
    keepalive_pending: bool

    def keepalive_due(self) -> bool: ...

    def keepalive_send(self, frame: bytes) -> None: ...

    def keepalive_timeout(self) -> None: ...


class KeepaliveWheel:
    """The sockets of one event loop that share an interval and a timeout."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, interval: float, timeout: float | None
    ) -> None:
        self.loop = loop
        self.key = (loop, interval, timeout)
        self.tick_s = min(interval, timeout or interval) / TICKS_PER_PERIOD
        self.interval = max(1, round(interval / self.tick_s))
        self.timeout = None if timeout is None else max(1, math.ceil(timeout / self.tick_s))
        # The PING every socket gets: unmasked (server to client), one random
        # payload per wheel, so that a PONG for it is told from any other.
        self.payload = os.urandom(PAYLOAD_SIZE)
        self.frame = bytes((0x80 | PING_OPCODE, PAYLOAD_SIZE)) + self.payload
        self.payload_int = int.from_bytes(self.payload, "big")
        self.due: dict[int, set[Pinged]] = {}
        self.size = 0
        self.swept = self.now()
        self.timer: asyncio.TimerHandle | None = None

    def now(self) -> int:
        return int(self.loop.time() / self.tick_s)

    def add(self, socket: Pinged) -> None:
        """Start pinging ``socket``: the first PING one interval from now."""
        if self.size == 0:
            self.swept = self.now()  # idle since: no tick to catch up on
        now = max(self.now(), self.swept)
        socket.keepalive_pinged = now
        socket.keepalive_pending = False
        self.file(socket, now + self.interval)
        self.size += 1
        if self.timer is None:
            self.arm()

    def discard(self, socket: Pinged) -> None:
        bucket = self.due.get(socket.keepalive_tick)
        if bucket is None or socket not in bucket:
            return
        bucket.discard(socket)
        if not bucket:
            del self.due[socket.keepalive_tick]
        self.size -= 1
        if self.size == 0:
            self.stop()

    def file(self, socket: Pinged, tick: int) -> None:
        socket.keepalive_tick = tick
        bucket = self.due.get(tick)
        if bucket is None:
            self.due[tick] = {socket}
        else:
            bucket.add(socket)

    def arm(self) -> None:
        self.timer = self.loop.call_at((self.swept + 1) * self.tick_s, self.sweep)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if WHEELS.get(self.key) is self:
            del WHEELS[self.key]

    def sweep(self) -> None:
        """Visit every socket due by now (a late wakeup catches up)."""
        self.timer = None
        last = max(self.now(), self.swept + 1)
        for tick in range(self.swept + 1, last + 1):
            self.swept = tick
            bucket = self.due.pop(tick, None)
            for socket in bucket or ():
                self.visit(socket, tick)
        if self.size:
            self.arm()

    def visit(self, socket: Pinged, tick: int) -> None:
        pinged = socket.keepalive_pinged
        if socket.keepalive_pending and self.timeout is not None:
            if tick >= pinged + self.timeout:
                self.size -= 1
                socket.keepalive_pending = False
                socket.keepalive_timeout()
                return
            self.file(socket, pinged + self.timeout)
            return
        if tick < pinged + self.interval:
            self.file(socket, pinged + self.interval)
            return
        if not socket.keepalive_due():
            self.size -= 1
            return
        socket.keepalive_pinged = tick
        socket.keepalive_pending = True
        socket.keepalive_send(self.frame)
        later = self.interval if self.timeout is None else min(self.interval, self.timeout)
        self.file(socket, tick + later)

    def is_answer(self, data: bytes) -> bool:
        """``data`` is exactly one masked PONG frame carrying this wheel's payload."""
        return (
            len(data) == 2 + 4 + PAYLOAD_SIZE
            and data[0] == 0x8A
            and data[1] == 0x80 | PAYLOAD_SIZE
            and int.from_bytes(data[2:6], "big") ^ int.from_bytes(data[6:10], "big")
            == self.payload_int
        )


WHEELS: dict[tuple[asyncio.AbstractEventLoop, float, float | None], KeepaliveWheel] = {}


def wheel_for(
    loop: asyncio.AbstractEventLoop, interval: float, timeout: float | None
) -> KeepaliveWheel:
    """The loop's wheel for this interval and timeout (one per uvicorn process);
    it forgets itself once its last socket has left."""
    key = (loop, interval, timeout)
    wheel = WHEELS.get(key)
    if wheel is None:
        wheel = WHEELS[key] = KeepaliveWheel(loop, interval, timeout)
    return wheel
