"""Token expiry for every stream of the process: one timer, for the next
second that has streams due, instead of one per stream.

A uvloop ``TimerHandle`` per stream (with its callback and context) was about
0.5 KiB of each idle socket (docs/performance.md, "Memory per idle socket");
here a stream costs an entry in the set of its second. Expiries are rounded up
to the next whole second of the loop's clock: a stream ends at most a second
after its token expires, never before.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import weakref
from typing import Protocol


class Expiring(Protocol):
    def expired(self) -> None: ...


class Expiries:
    """The expiries of one event loop's streams, by second."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.due: dict[int, set[Expiring]] = {}
        self.seconds: list[int] = []  # a heap of the keys of ``due`` (and stale ones)
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0

    def add(self, stream: Expiring, delay: float) -> int:
        """Call ``stream.expired()`` ``delay`` s from now (at most a second later);
        the second returned is what ``discard`` takes."""
        second = math.ceil(self.loop.time() + delay)
        bucket = self.due.get(second)
        if bucket is None:
            self.due[second] = {stream}
            heapq.heappush(self.seconds, second)
        else:
            bucket.add(stream)
        if self.timer is None or second < self.timer_at:
            self.arm(second)
        return second

    def discard(self, stream: Expiring, second: int) -> None:
        bucket = self.due.get(second)
        if bucket is not None:
            bucket.discard(stream)
            if not bucket:
                del self.due[second]  # its timer, if any, finds nothing

    def arm(self, second: int) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = second
        self.timer = self.loop.call_at(second, self.fire)

    def fire(self) -> None:
        self.timer = None
        now = self.loop.time()
        seconds = self.seconds
        while seconds and (seconds[0] <= now or seconds[0] not in self.due):
            for stream in self.due.pop(heapq.heappop(seconds), ()):
                stream.expired()
        if seconds:
            self.arm(seconds[0])


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Expiries] = (
    weakref.WeakKeyDictionary()
)


def expiries() -> Expiries:
    """The running loop's expiries."""
    loop = asyncio.get_running_loop()
    found = _BY_LOOP.get(loop)
    if found is None:
        found = _BY_LOOP[loop] = Expiries(loop)
    return found
