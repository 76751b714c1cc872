"""The stream engine: one ``StreamSession`` per connection, whatever the transport.

A transport (the WebSocket consumer, the SSE endpoint) does the handshake,
encodes frames and closes; everything a stream *is* happens here.

Ordering. ``last`` is the highest id sent on this connection. A live event
with an id at or below it is a duplicate and is dropped; one above
``last + 1`` means pushes were lost or overtaken, and the missing ids are read
from the database first (every id below a committed one is committed: see
notifications/models.py). Handlers run one at a time (``_turn``), so ``last``
needs no lock.

Receiving. The layer hands this connection's messages straight to
``on_layer_message`` (``delivery.open_channel``): a live notification that is
next in line becomes a frame at once, with no queue or task per connection.
Anything that must wait (a gap to fill from the database, or a handler still
running) goes to a backlog that one short-lived task works through, so
messages are still handled one at a time and in order.

Sending: realtime/outbox.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from django.conf import settings

from notifications import delivery, metrics, openings, selectors, services
from notifications.db import off_loop
from notifications.ids import parse_id
from notifications.rendering import NotificationDict
from notifications.runtime import state
from realtime import frames
from realtime.expiry import expiries
from realtime.frames import CloseCode
from realtime.membership import Membership
from realtime.outbox import Transport, task

logger = logging.getLogger(__name__)

REPLAY_PAGE = 500
MAX_READ_IDS = 1000
CATCH_UP_INTERVAL = 10.0


class StreamSession(Membership):
    """One connection's stream: live events, replay pages and client actions
    in; ordered frames out through ``transport``."""

    __slots__ = (
        "__weakref__",
        "_backlog",
        "_caught_up_at",
        "_expiry",
        "_pump",
        "_turn",
        "last",
    )

    def __init__(self, transport: Transport, user_id: str) -> None:
        super().__init__(transport, user_id)
        self.last = 0
        self._turn = asyncio.Lock()
        self._backlog: deque[dict[str, Any]] | None = None
        self._pump: asyncio.Task[None] | None = None
        self._expiry: int | None = None  # its second in realtime/expiry.py
        self._caught_up_at = 0.0

    @property
    def closed(self) -> bool:
        return self._closed

    # -- opening ------------------------------------------------------------

    async def start(self, *, since: str | None, expires_at: float) -> None:
        """After the transport accepted: count the connection, arm the expiry,
        replay what follows ``since`` and send ``ready``."""
        async with self._turn:
            # Live events that came before this wait in the backlog; from
            # now on they are handled (after the replay: the turn is ours).
            if self._backlog and self._pump is None:
                self._pump = task(self._work_backlog())
            await self._count()
            delay = max(0.0, expires_at - time.time())
            self._expiry = expiries().add(self, delay)
            await self._replay_then_ready(since)

    async def _replay_then_ready(self, since_raw: str | None) -> None:
        since = parse_id(since_raw)
        opening = await openings.stream_start_async(
            user_id=self.user_id, since=since, limit=REPLAY_PAGE
        )
        seq = opening.sequence
        complete = True
        replayed = 0
        if since_raw is None:
            self.last = seq.last_id
        elif since is None:
            await self._send_waiting(
                frames.error("invalid_since", "since must be a notification id (digits).")
            )
            self.last = seq.last_id
            complete = False
        else:
            # A since beyond what exists (e.g. a reset database) cannot be
            # trusted: start from now and tell the client to refetch.
            complete = seq.purged_through <= since <= seq.last_id
            self.last = min(since, seq.last_id)
            for row in opening.replay:
                self.last = int(row["id"])
                await self._send_waiting(frames.notification(row))
            replayed = len(opening.replay)
            metrics.REPLAYED.inc(replayed)
            if replayed == REPLAY_PAGE:  # maybe more than one page: the rest as before
                replayed += await self._send_stored(up_to=None, wait=True)
        ready: frames.ReadyFrame = {
            "type": "ready",
            "user": self.user_id,
            "replayed": replayed,
            "complete": complete,
            "unread": opening.unread,
            "last_id": str(self.last),
        }
        await self._send_waiting(ready)

    def expired(self) -> None:
        state.spawn(self.close(CloseCode.EXPIRED))

    # -- layer events -> frames ---------------------------------------------

    def on_layer_message(self, message: dict[str, Any]) -> None:
        """Called by the layer for each message, in order, as it arrives."""
        if self._closed:
            return
        started = self._counted
        if started and self._pump is None and not self._turn.locked() and self._handle_now(message):
            return
        backlog = self._backlog
        if backlog is None:
            backlog = self._backlog = deque()
        elif len(backlog) >= settings.NOTIFY_WS_SEND_QUEUE:
            metrics.DROPPED.inc()
            task(self.close(CloseCode.SLOW))
            return
        backlog.append(message)
        if self._pump is None and started:
            self._pump = task(self._work_backlog())

    def _handle_now(self, message: dict[str, Any]) -> bool:
        """Handle a message that needs no waiting; False when it does."""
        kind = message.get("type")
        if kind == delivery.NOTIFICATION_EVENT:
            return self._live(message)
        if kind == delivery.READ_EVENT:
            if message["user"] == self.user_id and message.get("exclude") != self.channel_name:
                self._put(frames.read(message["ids"]), None)
            return True
        logger.warning("unknown layer message %r", kind)
        return True

    async def _work_backlog(self) -> None:
        try:
            async with self._turn:
                while self._backlog and not self._closed:
                    message = self._backlog.popleft()
                    if not self._handle_now(message):
                        await self._fill_gap_then_send(message)
        except Exception:
            logger.exception("handling a layer message failed")
            await self.close(CloseCode.INTERNAL)
        finally:
            self._pump = None
            self._backlog = None

    def _live(self, event: dict[str, Any]) -> bool:
        """Send a live notification that is next in line (or drop it as
        foreign or already sent); False when there is a gap to fill first."""
        if event["user"] != self.user_id or self._closed:
            return True
        notification: NotificationDict = event["n"]
        seq = int(notification["id"])
        if seq <= self.last:
            return True
        if seq > self.last + 1:
            return False
        self._enqueue(notification, committed_at=event.get("t"))
        return True

    async def _fill_gap_then_send(self, event: dict[str, Any]) -> None:
        notification: NotificationDict = event["n"]
        await self._send_stored(up_to=int(notification["id"]) - 1, wait=False)
        if not self._closed:
            self._enqueue(notification, committed_at=event.get("t"))

    async def _send_stored(self, *, up_to: int | None, wait: bool) -> int:
        """Send stored notifications after ``last`` (up to ``up_to``), oldest first."""
        sent = 0
        while not self._closed:
            rows = await off_loop(selectors.notifications_after)(
                user_id=self.user_id, after=self.last, up_to=up_to, limit=REPLAY_PAGE
            )
            for row in rows:
                if wait:
                    self.last = int(row["id"])
                    await self._send_waiting(frames.notification(row))
                else:
                    self._enqueue(row, committed_at=None)
            sent += len(rows)
            if len(rows) < REPLAY_PAGE:
                break
        metrics.REPLAYED.inc(sent)
        return sent

    def _enqueue(self, notification: NotificationDict, *, committed_at: float | None) -> None:
        self.last = int(notification["id"])
        self._put(frames.notification(notification), committed_at)

    # -- client actions ---------------------------------------------------------

    async def client_frame(self, frame: frames.ClientFrame | frames.ErrorFrame) -> None:
        """A decoded client frame (or the error answering an undecodable one)."""
        if self._closed:
            return
        if frame["type"] == "ping":
            self._put(frames.PONG, None)
            async with self._turn:
                await self._catch_up()
        elif frame["type"] == "read":
            await off_loop(services.notifications_mark_read)(
                user_id=self.user_id,
                ids=[int(i) for i in frame["ids"]],
                strict=False,
                origin_channel=self.channel_name,
            )
        else:
            self._put(frame, None)

    async def _catch_up(self) -> None:
        """A safety net for a lost last push: pushes that were lost are
        normally noticed at the next push (a gap); if none comes, a client's
        ping (at most every CATCH_UP_INTERVAL) reads what it is missing."""
        now = time.monotonic()
        if now - self._caught_up_at < CATCH_UP_INTERVAL:
            return
        self._caught_up_at = now
        seq = await off_loop(selectors.sequence_state)(user_id=self.user_id)
        if seq.last_id > self.last:
            await self._send_stored(up_to=seq.last_id, wait=False)

    # -- closing ------------------------------------------------------------------

    async def shutdown_close(self) -> None:
        await self.close(CloseCode.RESTART)

    async def close(self, code: CloseCode) -> None:
        """Close from the server side."""
        if self._closed:
            return
        self._closed = True
        metrics.SOCKET_CLOSES.labels(code=str(int(code))).inc()
        self._drop_outbox()
        # Side by side: the close may wait behind unsent data (a client that
        # does not read), and leaving may wait on Redis (an outage); neither
        # delays the other.
        await asyncio.gather(self._leave(), self._end(code))

    async def _end(self, code: CloseCode) -> None:
        try:
            await self.transport.end(code)
        except Exception:  # already gone
            logger.debug("close after disconnect", exc_info=True)

    async def disconnected(self) -> None:
        """The client went away."""
        self._closed = True
        self._stop_tasks()
        await self._leave()

    def release(self) -> None:
        """The transport is done (in its ``finally``): nothing of this
        connection may outlive it."""
        self._closed = True
        self._stop_tasks()
        self._release_membership()

    def _stop_tasks(self) -> None:
        if self._expiry is not None:
            expiries().discard(self, self._expiry)
            self._expiry = None
        for running in (self._writer, self._pump):
            if running is not None and running is not asyncio.current_task():
                running.cancel()
