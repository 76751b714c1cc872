"""The bounded outbox of a connection, and the transport it writes to.

Frames go through a bounded outbox drained by a writer task that exists
only while there is something to write: a client that reads too slowly
fills it and is closed with 4008 (it resumes) instead of holding memory or
delaying anyone else. An idle connection holds neither outbox nor task.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any, Protocol

from django.conf import settings

from notifications import metrics
from notifications.runtime import state
from realtime import frames
from realtime.frames import CloseCode, ServerFrame

logger = logging.getLogger(__name__)

SEND_TIMEOUT = 30.0  # replay and ready: how long a client may leave them unread


class Transport(Protocol):
    def write_now(self, frame: ServerFrame) -> bool:
        """Write one frame without waiting, if the transport can (nothing of
        its own queued, the client's buffer not full); False otherwise."""

    async def write(self, frame: ServerFrame) -> None:
        """Write one frame; waits while the client's buffer is full."""

    async def end(self, code: CloseCode) -> None:
        """Close the connection from the server side with ``code``."""


def task(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """A task of this connection's own, also when started from the layer's
    delivery (which runs in the publisher's or the subscriber's context)."""
    created: asyncio.Task[None] = asyncio.get_running_loop().create_task(
        coro, context=contextvars.Context()
    )
    state.background.add(created)
    created.add_done_callback(state.background.discard)
    return created


class Outbox:
    __slots__ = ("_closed", "_outbox", "_writer", "transport")

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._closed = False
        self._outbox: deque[tuple[ServerFrame, float | None]] | None = None
        self._writer: asyncio.Task[None] | None = None

    async def close(self, code: CloseCode) -> None:
        raise NotImplementedError

    def _drop_outbox(self) -> None:
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()
        self._outbox = None

    def _put(self, frame: ServerFrame, committed_at: float | None) -> None:
        if self._closed:
            return
        outbox = self._outbox
        if outbox is None:
            # Nothing queued: most frames go out at once, without a task.
            if self.transport.write_now(frame):
                state.live_frames += 1
                if committed_at is not None:
                    _delivered(committed_at)
                return
            outbox = self._outbox = deque()
        elif len(outbox) >= settings.NOTIFY_WS_SEND_QUEUE:
            metrics.DROPPED.inc()
            task(self.close(CloseCode.SLOW))
            return
        outbox.append((frame, committed_at))
        if self._writer is None:
            self._writer = task(self._write_outbox(outbox))

    def keepalive(self) -> None:
        """A keep-alive for an idle connection (SSE's ``: ping``); a busy
        one shows it is alive with what it is already writing."""
        if self._outbox is None:
            self._put(frames.KEEPALIVE, None)

    async def _send_waiting(self, frame: ServerFrame) -> None:
        """Send after whatever is queued, waiting for the client to take it
        (replay, ready). Only handlers call this, one at a time, so nothing
        is queued behind the writer meanwhile."""
        if self._closed:
            return
        if self._outbox is None and self.transport.write_now(frame):
            # Nothing queued and the transport took it without waiting (the
            # WebSocket's corked write), as ``transport.write`` would have:
            # a replay of ten costs no timeout, message or coroutine per frame.
            state.live_frames += 1
            return
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                if self._writer is not None:
                    await asyncio.wait((self._writer,))
                await self.transport.write(frame)
                state.live_frames += 1
        except TimeoutError:
            await self.close(CloseCode.SLOW)
        except Exception:  # the client is gone; the transport reports it
            logger.debug("send after disconnect", exc_info=True)

    async def _write_outbox(self, outbox: deque[tuple[ServerFrame, float | None]]) -> None:
        state.live_writers += 1  # frames queued: live work (notifications/push/throttle.py)
        try:
            while outbox:
                frame, committed_at = outbox.popleft()
                await self.transport.write(frame)
                state.live_frames += 1
                if committed_at is not None:
                    _delivered(committed_at)
        except Exception:  # the client is gone; the transport reports it
            logger.debug("send after disconnect", exc_info=True)
        finally:
            # Nothing runs between the last check of ``outbox`` and here, so
            # nothing was added that this task would miss.
            self._writer = None
            self._outbox = None
            state.live_writers -= 1


def _delivered(committed_at: float) -> None:
    delay = max(0.0, time.time() - committed_at)
    metrics.DELIVERED.inc()
    metrics.DELIVERY_SECONDS.observe(delay)
    state.live_delays += 1
    state.live_delay_sum += delay
