"""Live traffic first (notifications/push/throttle.py): while live traffic
runs, the push worker's sends go only in the time it leaves idle (never
while a request is being served), at a small floor when it leaves none, one
per turn of the loop, and without any limit once live traffic ends.

The loop's lag is real: a callback blocks the loop for a while each time it
runs. The live frames go through the real connection outbox
(realtime/outbox.py) into a transport that keeps them; requests in progress
go through the real ASGI wrapper (service/asgi_live.py). Nothing waits on
wall-clock luck: each step waits (generously bounded) for the state it needs.
"""

from __future__ import annotations

import asyncio

from notifications.push.throttle import CREDIT_CAP, Throttle
from notifications.runtime import state
from service.asgi_live import LiveRequests
from tests.push.liveload import Deliveries, Load, held_seconds, until


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


async def test_sends_are_held_back_while_live_frames_wait_and_resume_after() -> None:
    throttle = Throttle()
    throttle.start()
    sends = Sends(throttle)
    held_before = held_seconds()
    try:
        await until(lambda: throttle.ticks >= 3, "the throttle to tick")
        assert not throttle.limited, "held back with an idle loop"

        load = Load(live=True)
        await until(lambda: throttle.behind and throttle.held, "sends held back")
        # Held back, not stopped: sends still start, at the floor's pace.
        admitted = sends.count
        await until(lambda: sends.count > admitted + 2, "sends to go on while held back")
        assert throttle.limited
        assert load.transport.frames, "the live frames were written"
        await until(lambda: held_seconds() > held_before, "the held time to be counted")

        load.running = False
        await until(lambda: not throttle.limited, "the limit to be lifted")
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
        assert not throttle.limited
    finally:
        load.running = False
        sends.task.cancel()
        await throttle.stop()


async def test_late_live_deliveries_hold_pushes_back_with_a_free_loop() -> None:
    throttle = Throttle()
    throttle.start()
    sends = Sends(throttle)
    late = Deliveries(age=1.0)  # a second after their commit: live traffic waits
    try:
        await until(lambda: throttle.behind, "sends held back to the floor")
        assert throttle.credit == 0.0, "idle time granted while live traffic waits"
        late.running = False
        await until(lambda: not throttle.limited, "the limit to be lifted")
    finally:
        late.running = False
        sends.task.cancel()
        await throttle.stop()


async def test_a_held_send_that_is_cancelled_leaves_the_queue() -> None:
    throttle = Throttle()  # limited until its first tick (not started here)
    throttle.floor = 1.0
    await throttle.admit()  # the floor's one send
    waiting = asyncio.ensure_future(throttle.admit())
    await until(lambda: len(throttle._waiters) == 1, "the second send to wait")
    waiting.cancel()
    await until(waiting.done, "the cancellation")
    assert not throttle._waiters


class Request:
    """An HTTP request in progress through the real wrapper until ``finish``."""

    def __init__(self) -> None:
        self.done = asyncio.Event()

        async def app(scope: dict[str, object], receive: object, send: object) -> None:
            await self.done.wait()

        self.task = asyncio.ensure_future(LiveRequests(app)({"type": "http"}, None, None))

    def finish(self) -> None:
        self.done.set()


async def test_no_push_starts_beyond_the_floor_while_a_request_is_served() -> None:
    throttle = Throttle()
    throttle.start()
    fresh = Deliveries(age=0.0)  # live traffic that keeps up
    request = Request()
    try:
        await until(lambda: state.live_requests > 0, "the request to be in progress")
        await until(lambda: throttle.limited, "live traffic seen")
        # Idle time granted (as a tick grants it on idle cores; how much the
        # machine's load lets it grant is no part of this test), the floor spent.
        throttle.credit, throttle.floor = CREDIT_CAP, -1e9
        waiting = asyncio.ensure_future(throttle.admit())
        await until(lambda: throttle.held == 1, "the send to wait")
        ticks = throttle.ticks
        await until(lambda: throttle.ticks >= ticks + 5, "five more ticks")
        assert not waiting.done(), "a push started while a request was being served"
        request.finish()
        throttle.credit, throttle.floor = CREDIT_CAP, 0.0  # a lagging tick may have spent it
        await until(waiting.done, "the send to start once the request is served")
    finally:
        fresh.running = False
        request.finish()
        await request.task
        await throttle.stop()


async def test_requests_alone_are_no_live_traffic() -> None:
    """A process without sockets (publishes only, as ``bench push``) sends
    without limit: the publishes that owe the pushes do not hold them."""
    throttle = Throttle()
    throttle.start()
    sends = Sends(throttle)
    request = Request()
    try:
        await until(lambda: state.live_requests > 0, "the request to be in progress")
        await until(lambda: throttle.ticks >= 5, "five ticks")
        admitted = sends.count
        await until(lambda: sends.count > admitted + 1000, "sends at full pace")
        assert not throttle.limited
    finally:
        request.finish()
        await request.task
        sends.task.cancel()
        await throttle.stop()
