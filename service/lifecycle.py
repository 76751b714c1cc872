"""Process lifecycle: ASGI lifespan, SIGTERM drain, the registry of sockets.

On SIGTERM the process turns ``/readyz`` to 503 at once, refuses new
sockets, closes open ones with 1012 in batches spread over
``NOTIFY_DRAIN_SECONDS`` (so their reconnects do not stampede the other
pods), and only then hands the signal to uvicorn, which finishes requests in
flight and exits.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

from notifications.runtime import Closable, state

logger = logging.getLogger(__name__)

DRAIN_BATCHES = 10


Handler = Callable[[int, FrameType | None], Any] | int | None


async def drain(window: float, only: Callable[[Any], bool] | None = None) -> None:
    """Close every open socket (or those ``only`` picks) with 1012, in batches
    over ``window`` seconds."""
    sockets: list[Closable] = [s for s in state.sockets if only is None or only(s)]
    if not sockets:
        return
    batches = min(DRAIN_BATCHES, len(sockets))
    size = -(-len(sockets) // batches)
    pause = window / batches
    for start in range(0, len(sockets), size):
        batch = sockets[start : start + size]
        # Operators see the drain progress (and its pace) in the log.
        logger.info("drain: closing %d sockets (%d of %d)", len(batch), start, len(sockets))
        await asyncio.gather(*(s.shutdown_close() for s in batch), return_exceptions=True)
        if start + size < len(sockets):
            await asyncio.sleep(pause)


def install_sigterm_drain(window: float) -> None:
    loop = asyncio.get_running_loop()
    previous: Handler = signal.getsignal(signal.SIGTERM)

    def hand_over(signum: int, frame: FrameType | None) -> None:
        if callable(previous):
            previous(signum, frame)

    async def drain_then_exit(signum: int, frame: FrameType | None) -> None:
        try:
            await drain(window)
        except Exception:
            logger.exception("drain failed")
        hand_over(signum, frame)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if state.shutting_down:  # a second SIGTERM: stop waiting
            hand_over(signum, frame)
            return
        state.shutting_down = True
        logger.info("SIGTERM: draining %d sockets over %.1fs", len(state.sockets), window)
        loop.call_soon_threadsafe(lambda: state.spawn(drain_then_exit(signum, frame)))

    signal.signal(signal.SIGTERM, on_sigterm)


Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def lifespan(
    receive: Receive,
    send: Send,
    *,
    on_startup: Callable[[], Awaitable[None]],
    on_shutdown: Callable[[], Awaitable[None]],
) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await on_startup()
            except Exception as exc:
                logger.exception("startup failed")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            state.shutting_down = True
            try:
                await on_shutdown()
            finally:
                await send({"type": "lifespan.shutdown.complete"})
            return


# The publish writer thread returns from each database or Redis round trip
# wanting the GIL back while the event loop holds it; CPython makes it wait
# up to the switch interval (5 ms by default) before the loop is asked to let
# go, several times per group. 1 ms bounds that wait per round trip
# (docs/performance.md, "Latency at 500/s, fourth round").
WRITER_SWITCH_INTERVAL_S = 0.001


def tune_threads() -> None:
    """After start-up: the GIL is handed over sooner to a thread back from I/O."""
    sys.setswitchinterval(WRITER_SWITCH_INTERVAL_S)


def tune_gc() -> None:
    """After start-up: what was loaded (Django, the app, ~125,000 objects) is
    moved out of the collector's sight, so every later full collection walks
    only what the process made since (a reconnect storm sets off several:
    docs/performance.md, "Handshakes, second round"). The thresholds stay
    CPython's: rarer young collections cost CPU less but left the storm's
    garbage cycles unfreed for longer, about 1 KiB more RSS per socket."""
    gc.collect()
    gc.freeze()
