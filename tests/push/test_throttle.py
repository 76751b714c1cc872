"""Live traffic first (notifications/push/throttle.py): the push worker's
sends are held back while live traffic waits (the event loop lags while
live frames are written, or live deliveries are late after their commit),
never stopped, and released once live traffic keeps up.

The loop's lag is real: a callback blocks the loop for a while each time it
runs. The live frames go through the real connection outbox
(realtime/outbox.py) into a transport that keeps them. Nothing waits on
wall-clock luck: each step waits (generously bounded) for the state it needs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from notifications import metrics
from notifications.push.throttle import FLOOR, Throttle
from realtime import frames
from realtime.frames import CloseCode, ServerFrame
from realtime.outbox import Outbox

BLOCK = 0.03  # seconds the loop is blocked each time (LAG_LIMIT is 5 ms)


class Kept:
    """A transport that keeps what it is given."""

    def __init__(self) -> None:
        self.frames: list[ServerFrame] = []

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


class Sends:
    """Admits sends one after another, as the worker's send slots do."""

    def __init__(self, throttle: Throttle) -> None:
        self.count = 0
        self.task = asyncio.ensure_future(self._run(throttle))

    async def _run(self, throttle: Throttle) -> None:
        while True:
            await throttle.admit()
            self.count += 1
            await asyncio.sleep(0)


async def until(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.005)


def held_seconds() -> float:
    value: float = metrics.PUSH_HELD._value.get()
    return value


async def test_sends_are_held_back_while_live_frames_wait_and_resume_after() -> None:
    throttle = Throttle()
    throttle.start()
    sends = Sends(throttle)
    held_before = held_seconds()
    try:
        await until(lambda: throttle.ticks >= 3, "the throttle to tick")
        assert throttle.limit is None, "held back with an idle loop"

        load = Load(live=True)
        await until(lambda: throttle.limit == FLOOR, "sends held back to the floor")
        # Held back, not stopped: sends still start, at the floor's pace.
        admitted = sends.count
        await until(lambda: sends.count > admitted + 2, "sends to go on while held back")
        assert throttle.limit == FLOOR
        assert load.transport.frames, "the live frames were written"
        assert held_seconds() > held_before

        load.running = False
        await until(lambda: throttle.limit is None, "the limit to be lifted")
        admitted = sends.count
        await until(lambda: sends.count > admitted + 1000, "sends at full pace again")
    finally:
        sends.task.cancel()
        await throttle.stop()


async def test_a_lagging_loop_without_live_traffic_does_not_hold_pushes_back() -> None:
    throttle = Throttle()
    throttle.start()
    sends = Sends(throttle)
    load = Load(live=False)
    try:
        await until(lambda: throttle.ticks >= 20, "twenty ticks of a lagging loop")
        assert throttle.limit is None
    finally:
        load.running = False
        sends.task.cancel()
        await throttle.stop()


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


async def test_late_live_deliveries_hold_pushes_back_with_a_free_loop() -> None:
    throttle = Throttle()
    throttle.start()
    sends = Sends(throttle)
    late = Deliveries(age=1.0)  # a second after their commit: live traffic waits
    try:
        await until(lambda: throttle.limit == FLOOR, "sends held back to the floor")
        late.running = False
        await until(lambda: throttle.limit is None, "the limit to be lifted")
    finally:
        late.running = False
        sends.task.cancel()
        await throttle.stop()


async def test_a_held_send_that_is_cancelled_leaves_the_queue() -> None:
    throttle = Throttle()
    throttle.limit = 1
    await throttle.admit()  # the tick's one send
    waiting = asyncio.ensure_future(throttle.admit())
    await until(lambda: len(throttle._waiters) == 1, "the second send to wait")
    waiting.cancel()
    await until(waiting.done, "the cancellation")
    assert not throttle._waiters
