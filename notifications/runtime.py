"""What this process is doing: serving or shutting down, its open streams,
its background tasks.

The transports register their connections here and check ``shutting_down``
before accepting; ``service/lifecycle.py`` flips it on SIGTERM and drains the
registry. It lives below the transports so that they need nothing from the
composition root.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable
from typing import Any, Protocol


class Closable(Protocol):
    async def shutdown_close(self) -> None: ...


class ProcessState:
    def __init__(self) -> None:
        self.shutting_down = False
        self.sockets: weakref.WeakSet[Any] = weakref.WeakSet()
        self.background: set[asyncio.Task[None]] = set()
        # Live traffic, for the push worker's throttle (notifications/push/
        # throttle.py), kept by realtime/outbox.py: frames written to
        # connections so far, connections with frames still queued, and the
        # live notifications written with their total delay since commit;
        # and by service/asgi_live.py: HTTP requests being served.
        self.live_requests = 0
        self.live_frames = 0
        self.live_writers = 0
        self.live_delays = 0
        self.live_delay_sum = 0.0

    def live_in_progress(self) -> bool:
        """A request being served or frames queued for a connection."""
        return self.live_requests > 0 or self.live_writers > 0

    def spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)


state = ProcessState()
