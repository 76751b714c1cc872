"""Live traffic first: while live traffic runs, the push worker of a service
process sends only in the time that traffic leaves idle.

A push worker inside a service process shares the event loop (and, through
the GIL, one core) with the WebSocket and SSE connections and the API, and a
push costs about twice a live delivery in CPU (docs/performance.md). The rule:

* **No live traffic** (no live frame written to, or queued for, a socket
  or stream for ``HOLD``): no limit. Pushes are then the process's only
  work besides its API (the publishes that owe them included) and take all
  of it.
* **Live traffic**: a send may start only while nothing live is in
  progress in the process (no HTTP request being served, no frame queued
  for a connection: ``ProcessState.live_in_progress``), so a push never
  competes with a live delivery for the loop, the GIL or the database, and
  within a budget: every ``TICK`` the throttle measures how busy the
  process was (the CPU of all its threads, plus the time the loop's thread
  waited for a CPU the machine did not give it: loadstat.py), takes away
  what its own sends cost, and grants ``SHARE`` of what is left idle;
  nothing when the container or machine had tasks waiting for a CPU for
  more than ``PRESSURE_LIMIT`` of the tick (Linux PSI, loadstat.py): the
  process may be idle only because its live requests wait on a database
  that shares its cores, and pushes would take that CPU.
* **Behind**: when live traffic waits anyway (a timer of the loop ran more
  than ``LAG_LIMIT`` late, or the live notifications written in the tick
  were on average more than ``DELAY_LIMIT`` after their commit) the tick
  grants nothing.
* **Floor**: ``FLOOR_RATE`` pushes/s go out whatever the load (about 1 % of
  a core): a process kept saturated by its sockets still drains its outbox
  slowly, and the rows its lanes have leased keep moving.
* **Slices**: while live traffic runs, at most ``PER_TURN`` send starts per
  turn of the loop (a push's encryption and write are a fraction of a
  millisecond), so a live callback never waits behind a run of pushes.

Sends already started finish; held sends wait in order and are never
dropped (the outbox keeps them: only their latency grows, and they catch up
once the live traffic eases). Time during which sends were waiting is
``notify_push_held_seconds_total`` (docs/operations.md, "Live traffic
first"). The ticker runs only while pushes are being sent, so an idle
process does not wake 100 times a second; the first sends after it slept
wait for its first look (one tick).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque

from notifications import metrics
from notifications.push.loadstat import LoadStat
from notifications.runtime import state

TICK = 0.01  # seconds between looks at the process
LAG_LIMIT = 0.005  # a timer this late means the loop is behind
DELAY_LIMIT = 0.05  # live deliveries later than this after commit (mean per tick)
HOLD = 0.1  # live traffic lasts this long after the last tick that saw some
SHARE = 0.5  # of the idle time live traffic leaves, what pushes may use
PRESSURE_LIMIT = 0.1  # share of a tick with tasks waiting for a CPU: no idle time
FLOOR_RATE = 10.0  # pushes/s sent even when live traffic leaves no idle time
PER_TURN = 1  # send starts per turn of the loop while live traffic runs
CREDIT_CAP = 8.0  # sends a quiet stretch may save up (bounds a burst)
COST = 0.001  # seconds of CPU per push until measured (docs/performance.md: 0.7-0.9 ms)
COST_MIN, COST_MAX = 0.0002, 0.005  # bounds of the measured cost (a tick's noise)
CALIBRATE_MIN = 3  # sends in a tick without live traffic to measure the cost by
IDLE_TICKS = 100  # ticks without a send before the ticker stops (1 s)


class Throttle:
    def __init__(self) -> None:
        # Live traffic: sends only within the credits. Until a tick has
        # looked, assume there is: a burst of pushes waits at most a tick.
        self.limited = True
        self.behind = False  # live traffic waits: only the floor
        self.credit = 0.0  # sends the idle time granted
        self.floor = 0.0  # sends the floor granted
        self.cost = COST  # seconds of process time per send, measured
        self.started = 0  # sends started this tick
        self.ticks = 0  # looks at the process so far
        self._turn = 0  # sends started this turn of the loop
        self._turn_pending = False
        self._refused = False  # a send had to wait this tick
        self._open = False  # no limit any more (shutting down)
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._active = asyncio.Event()
        self._ticker: asyncio.Task[None] | None = None

    @property
    def held(self) -> int:
        """Sends waiting now."""
        return len(self._waiters)

    def start(self) -> None:
        self._ticker = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self.lift()

    def lift(self) -> None:
        """Let every send go (no live traffic)."""
        self.limited = self.behind = False
        self._release()

    def open(self) -> None:
        """Let every send go from now on (shutting down: what the worker
        claimed goes out within the grace)."""
        self._open = True
        self.lift()

    async def admit(self) -> None:
        """Wait, while live traffic leaves no room, until this send may start."""
        self._active.set()
        if not self._waiters and self._may_start():
            self._take()
            return
        self._refused = True
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # _release counted it
        except asyncio.CancelledError:
            if waiter in self._waiters:  # still waiting (the future was cancelled)
                self._waiters.remove(waiter)
            elif not waiter.cancelled():  # admitted, then cancelled: pass the turn on
                self._release()
            raise

    def _may_start(self) -> bool:
        if not self.limited:
            return True
        if self._turn >= PER_TURN:
            return False
        return self.floor >= 1.0 or (self.credit >= 1.0 and not state.live_in_progress())

    def _take(self) -> None:
        self.started += 1
        if not self.limited:
            return
        if self.credit >= 1.0 and not state.live_in_progress():
            self.credit -= 1.0
        else:
            self.floor -= 1.0
        self._turn += 1
        if not self._turn_pending:  # the next turn, after the loop's next poll
            self._turn_pending = True
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._turn_pending = False
        self._turn = 0
        self._release()

    def _release(self) -> None:
        while self._waiters and self._may_start():
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._take()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stat = LoadStat()
        try:
            await self._watch(loop, stat)
        finally:
            stat.close()

    async def _watch(self, loop: asyncio.AbstractEventLoop, stat: LoadStat) -> None:
        frames = state.live_frames
        delays, delay_sum = state.live_delays, state.live_delay_sum
        idle = 0
        live_until = 0.0
        while True:
            if idle >= IDLE_TICKS:  # nothing sent for a while: sleep until a send
                self.limited = not self._open  # unknown until the next tick
                self._active.clear()
                await self._active.wait()
                idle = 0
                stat.busy(), stat.pressure()  # the span asleep is not a tick's
            began = loop.time()
            await asyncio.sleep(TICK)
            elapsed = loop.time() - began
            busy, pressure = stat.busy(), stat.pressure()
            live = state.live_writers > 0 or state.live_frames != frames
            late = state.live_delays > delays and (
                state.live_delay_sum - delay_sum > DELAY_LIMIT * (state.live_delays - delays)
            )
            frames = state.live_frames
            delays, delay_sum = state.live_delays, state.live_delay_sum
            idle = idle + 1 if not self.started and not self._waiters else 0
            if live or late:
                live_until = loop.time() + HOLD
            behind = late or (live and elapsed - TICK > LAG_LIMIT)
            if pressure is not None and pressure > PRESSURE_LIMIT:
                busy = float("inf")  # no CPU is idle: the tick grants nothing
            self._adjust(live=loop.time() < live_until, behind=behind, elapsed=elapsed, busy=busy)

    def _adjust(self, *, live: bool, behind: bool, elapsed: float, busy: float) -> None:
        """The end of a tick: ``busy`` seconds of the ``elapsed`` were the
        process's (its threads' CPU and the loop's waits for a CPU; infinite
        when the cores had no idle time to give)."""
        started, self.started = self.started, 0
        refused, self._refused = self._refused or bool(self._waiters), False
        self.ticks += 1
        if not live or self._open:
            # The cost of a send: measured while the process mostly pushed.
            if started >= CALIBRATE_MIN and not self.limited and math.isfinite(busy):
                sample = min(COST_MAX, max(COST_MIN, busy / started))
                self.cost += 0.1 * (sample - self.cost)
            self.lift()
            return
        if self.limited and refused:
            metrics.PUSH_HELD.inc(elapsed)
        self.limited, self.behind = True, behind
        self.floor = min(1.0, self.floor + FLOOR_RATE * elapsed)
        if behind:
            self.credit = 0.0
        else:
            live_busy = max(0.0, busy - started * self.cost)
            grant = SHARE * max(0.0, elapsed - live_busy) / self.cost
            self.credit = min(CREDIT_CAP, self.credit + grant)
        self._release()
