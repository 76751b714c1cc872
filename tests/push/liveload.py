"""Live traffic for the push throttle's tests: a loop kept busy while live
frames are written through the real connection outbox (realtime/outbox.py),
and fresh or late live deliveries with the loop free."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from notifications import metrics
from realtime import frames
from realtime.frames import CloseCode, ServerFrame
from realtime.outbox import Outbox

BLOCK = 0.03  # seconds the loop is blocked each time (LAG_LIMIT is 5 ms)


class Kept:
    """A transport that keeps what it is given."""

    def __init__(self) -> None:
        self.frames: list[ServerFrame] = []

    def write_now(self, frame: ServerFrame) -> bool:
        self.frames.append(frame)
        return True

    async def write(self, frame: ServerFrame) -> None:
        self.frames.append(frame)

    async def end(self, code: CloseCode) -> None:
        pass


class Connection(Outbox):
    async def close(self, code: CloseCode) -> None:
        self._closed = True


class Load:
    """Blocks the loop ``BLOCK`` s at a time, writing a live frame each time
    when ``live``, until stopped."""

    def __init__(self, *, live: bool) -> None:
        self.transport = Kept()
        self.connection = Connection(self.transport)
        self.live = live
        self.running = True
        asyncio.get_running_loop().call_soon(self._step)

    def _step(self) -> None:
        if not self.running:
            return
        if self.live:
            self.connection._put(frames.KEEPALIVE, None)
        time.sleep(BLOCK)  # the loop is busy: nothing else runs meanwhile
        asyncio.get_running_loop().call_soon(self._step)


class Deliveries:
    """Writes a live notification every few milliseconds through a real
    connection outbox, committed ``age`` seconds before; the loop stays free."""

    def __init__(self, age: float) -> None:
        self.connection = Connection(Kept())
        self.age = age
        self.running = True
        self._step()

    def _step(self) -> None:
        if self.running:
            self.connection._put(frames.KEEPALIVE, time.time() - self.age)
            asyncio.get_running_loop().call_later(0.002, self._step)


async def until(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.005)


def held_seconds() -> float:
    value: float = metrics.PUSH_HELD._value.get()
    return value
