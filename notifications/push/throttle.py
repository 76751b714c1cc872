"""Live traffic first: the push worker holds back while the event loop lags
and live frames are being written.

A push worker inside a service process shares the event loop (and, through
the GIL, one core) with the WebSocket and SSE connections. A push costs about
twice a live delivery in CPU (docs/performance.md), so a flood of pushes
would otherwise take the loop's time from the sockets and their deliveries
would slow down and wait. The rule, checked every ``TICK``:

* **Behind** means live traffic is waiting: either the live notifications
  written during the tick took more than ``DELAY_LIMIT`` on average from
  their commit (the publish, the database and the channel layer were slow:
  the GIL the pushes hold slows the database threads too, which no loop
  lag shows), or the loop ran the tick's timer more than ``LAG_LIMIT`` late
  (it had more ready work than it could run) while live frames were
  written or still queued (``ProcessState.live_*``, kept by
  realtime/outbox.py). Lag alone does not hold pushes back: with no live
  traffic they are the process's only work and take all of it.
* Behind lasts ``HOLD`` after the last tick that saw it: live deliveries
  come in bursts, and a tick without one says nothing about the next.
* While behind, the number of sends that may *start* per tick halves, from
  what the worker was doing, down to ``FLOOR`` (so pushes never stop: owed
  pushes are all sent eventually, with their TTL rules unchanged).
* Once the loop keeps up (or the live traffic ends) it grows by one per
  tick (slowly: a burst of pushes would put the loop behind again at once)
  and the limit is lifted when it passes ``CEILING``.

Sends already started finish; held sends wait in order. The time spent
held back is ``notify_push_held_seconds_total`` (docs/operations.md).
The ticker runs only while pushes are being sent, so an idle process does
not wake 100 times a second for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from notifications import metrics
from notifications.runtime import state

TICK = 0.01  # seconds between looks at the loop
LAG_LIMIT = 0.005  # a timer this late means the loop is behind
DELAY_LIMIT = 0.05  # live deliveries later than this after commit (mean per tick)
HOLD = 0.1  # behind until this long after the last tick that saw live traffic wait
FLOOR = 1  # sends that may start per tick while held back (10/s with TICK)
CEILING = 64  # per tick: past this the limit is lifted
IDLE_TICKS = 100  # ticks without a send before the ticker stops (1 s)


class Throttle:
    def __init__(self) -> None:
        self.limit: int | None = None  # sends per tick, None: not held back
        self.started = 0  # sends started this tick
        self.ticks = 0  # looks at the loop so far
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._active = asyncio.Event()
        self._ticker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._ticker = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self._lift()

    async def admit(self) -> None:
        """Wait, if held back, until this send may start."""
        self._active.set()
        limit = self.limit
        if limit is None or (self.started < limit and not self._waiters):
            self.started += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # _release counted it
        except asyncio.CancelledError:
            if waiter in self._waiters:  # still waiting (the future was cancelled)
                self._waiters.remove(waiter)
            elif not waiter.cancelled():  # admitted, then cancelled: pass the turn on
                self.started -= 1
                self._release()
            raise

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        frames, delays, delay_sum = state.live_frames, state.live_delays, state.live_delay_sum
        idle = 0
        behind_until = 0.0
        while True:
            if idle >= IDLE_TICKS:  # nothing sent for a while: sleep until a send
                self._lift()
                self._active.clear()
                await self._active.wait()
                idle = 0
            began = loop.time()
            await asyncio.sleep(TICK)
            elapsed = loop.time() - began
            live = state.live_writers > 0 or state.live_frames != frames
            late = state.live_delays > delays and (
                state.live_delay_sum - delay_sum > DELAY_LIMIT * (state.live_delays - delays)
            )
            frames, delays, delay_sum = state.live_frames, state.live_delays, state.live_delay_sum
            idle = idle + 1 if not self.started and not self._waiters else 0
            if late or (live and elapsed - TICK > LAG_LIMIT):
                behind_until = loop.time() + HOLD
            self._adjust(behind=loop.time() < behind_until, elapsed=elapsed)

    def _adjust(self, *, behind: bool, elapsed: float = TICK) -> None:
        started, self.started = self.started, 0
        self.ticks += 1
        if behind:
            base = self.limit if self.limit is not None else max(started, FLOOR)
            self.limit = max(FLOOR, base // 2)
        elif self.limit is not None:
            self.limit += 1  # slowly: a burst of pushes would put the loop behind again
            if self.limit > CEILING:
                self._lift()
                return
        if self.limit is not None:
            metrics.PUSH_HELD.inc(elapsed)
        self._release()

    def _lift(self) -> None:
        self.limit = None
        self._release()

    def _release(self) -> None:
        while self._waiters and (self.limit is None or self.started < self.limit):
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self.started += 1
