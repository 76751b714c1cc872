"""The WebSocket consumer: thin. Frames in -> services; layer events -> frames.

Ordering. ``self.last`` is the highest id sent on this socket. A live event
with an id at or below it is a duplicate and is dropped; one above
``last + 1`` means pushes were lost or overtaken, and the missing ids are read
from the database first (every id below a committed one is committed: see
notifications/models.py). Channels dispatches one message at a time per
consumer, so ``last`` needs no lock.

Receiving. The layer hands this socket's messages straight to
``_on_layer_message`` (``delivery.open_channel``): a live notification that
is next in line becomes a frame at once, with no queue or task per socket.
Anything that must wait (a gap to fill from the database, or a handler still
running for this socket) goes to a backlog that one short-lived task works
through, so messages are still handled one at a time and in order.

Sending. Frames go through a bounded outbox drained by a writer task that
exists only while there is something to write: a client that reads too
slowly fills it and is closed with 4008 (it resumes with ``since``) instead
of holding memory or delaying anyone else. An idle socket holds neither
outbox nor task.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs

import orjson
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from notifications import delivery, metrics, presence, selectors, services
from notifications.db import off_loop
from notifications.ids import parse_id
from notifications.ratelimit import TokenBucket
from notifications.rendering import NotificationDict
from service.lifecycle import state

logger = logging.getLogger(__name__)

REPLAY_PAGE = 500
SEND_TIMEOUT = 30.0  # replay and ready: how long a client may leave them unread
MAX_READ_IDS = 1000
CATCH_UP_INTERVAL = 10.0

CLOSE_EXPIRED = 4401
CLOSE_SLOW = 4008
CLOSE_ABUSE = 1008
CLOSE_TOO_BIG = 1009
CLOSE_RESTART = 1012
CLOSE_TRY_AGAIN = 1013
CLOSE_INTERNAL = 1011


def _db(func: Any) -> Any:
    """ORM calls leave the event loop; reads run in parallel threads."""
    return off_loop(func)


def _frame(payload: dict[str, Any]) -> str:
    return orjson.dumps(payload).decode()


def _task(coro: Any) -> asyncio.Task[None]:
    """A task of this socket's own, also when started from the layer's
    delivery (which runs in the publisher's or the subscriber's context)."""
    task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
        coro, context=contextvars.Context()
    )
    state.background.add(task)
    task.add_done_callback(state.background.discard)
    return task


class NotificationConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    user_id: str
    last: int = 0
    _outbox: deque[tuple[str, float | None]] | None = None
    _writer: asyncio.Task[None] | None = None
    _backlog: deque[dict[str, Any]] | None = None
    _pump: asyncio.Task[None] | None = None
    _expiry: asyncio.TimerHandle | None = None
    _joined = False
    _closed = False
    _caught_up_at = 0.0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        channel = delivery.open_channel(self._on_layer_message)
        if channel is None:  # a layer without direct channels: the channels way
            await super().__call__(scope, receive, send)
            return
        self.scope = scope
        self.channel_name = channel
        self.base_send = send
        self._turn = asyncio.Lock()  # one handler at a time, as channels does
        try:
            while True:
                message = await receive()
                async with self._turn:
                    await self.dispatch(message)
        except StopConsumer:
            pass
        finally:
            delivery.close_channel(channel)
            self._closed = True
            self._stop_tasks()
            if self._joined:  # left without a disconnect message (an error)
                state.spawn(self._leave())

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Without channels' close_old_connections before each handler (a
        # thread hop per message): the ORM runs only through off_loop, which
        # closes old connections itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # -- connect ---------------------------------------------------------

    async def connect(self) -> None:
        self.user_id = self.scope["user_id"]
        # One budget per socket for every frame the client sends: the server's
        # protocol (service/ws_protocol.py) charges PINGs and PONGs to it.
        self._bucket = self.scope.get("notify_frame_budget") or TokenBucket(
            *settings.NOTIFY_WS_FRAME_RATE
        )
        try:
            await delivery.join(self.user_id, self.channel_name)
        except Exception as exc:
            # Not a credential problem: accept and close with 1013 (try again
            # later) so the client knows to retry, as ws_auth does when the
            # layer fails even earlier.
            logger.warning("channel layer unavailable; refusing socket (%s)", type(exc).__name__)
            metrics.HANDSHAKES_REFUSED.labels(reason="unavailable").inc()
            await self.accept(self.scope.get("notify_subprotocol"))
            await self.close(code=CLOSE_TRY_AGAIN)
            return
        self._joined = True
        await self.accept(self.scope.get("notify_subprotocol"))
        state.sockets.add(self)
        metrics.SOCKETS_OPEN.inc()
        await presence.backend().connected(self.user_id, self.channel_name)
        self._schedule_expiry(float(self.scope["token_expires_at"]))
        await self._start_stream()

    async def _start_stream(self) -> None:
        since_raw = self._query_param("since")
        seq = await _db(selectors.sequence_state)(user_id=self.user_id)
        complete = True
        replayed = 0
        if since_raw is None:
            self.last = seq.last_id
        elif parse_id(since_raw) is None:
            await self._send_now(
                {
                    "type": "error",
                    "code": "invalid_since",
                    "detail": "since must be a notification id (digits).",
                }
            )
            self.last = seq.last_id
            complete = False
        else:
            since = parse_id(since_raw) or 0
            # A since beyond what exists (e.g. a reset database) cannot be
            # trusted: start from now and tell the client to refetch.
            complete = seq.purged_through <= since <= seq.last_id
            self.last = min(since, seq.last_id)
            replayed = await self._send_stored(up_to=None, wait=True)
        unread = await _db(selectors.unread_count)(user_id=self.user_id)
        await self._send_now(
            {
                "type": "ready",
                "user": self.user_id,
                "replayed": replayed,
                "complete": complete,
                "unread": unread,
                "last_id": str(self.last),
            }
        )

    def _query_param(self, name: str) -> str | None:
        values = parse_qs(self.scope.get("query_string", b"").decode("latin1")).get(name)
        return values[0] if values else None

    def _schedule_expiry(self, expires_at: float) -> None:
        delay = max(0.0, expires_at - time.time())
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(delay, self._expired)

    def _expired(self) -> None:
        state.spawn(self._close(CLOSE_EXPIRED))

    # -- layer events -> frames -----------------------------------------

    def _on_layer_message(self, message: dict[str, Any]) -> None:
        """Called by the layer for each message, in order, as it arrives."""
        if self._closed:
            return
        if self._pump is None and not self._turn.locked() and self._handle_now(message):
            return
        backlog = self._backlog
        if backlog is None:
            backlog = self._backlog = deque()
        elif len(backlog) >= settings.NOTIFY_WS_SEND_QUEUE:
            metrics.DROPPED.inc()
            _task(self._close(CLOSE_SLOW))
            return
        backlog.append(message)
        if self._pump is None:
            self._pump = _task(self._work_backlog())

    def _handle_now(self, message: dict[str, Any]) -> bool:
        """Handle a message that needs no waiting; False when it does."""
        kind = message.get("type")
        if kind == delivery.NOTIFICATION_EVENT:
            return self._live(message)
        if kind == delivery.READ_EVENT:
            self._read_elsewhere(message)
            return True
        return False

    async def _work_backlog(self) -> None:
        try:
            async with self._turn:
                while self._backlog and not self._closed:
                    message = self._backlog.popleft()
                    if message.get("type") == delivery.NOTIFICATION_EVENT:
                        await self.notification_created(message)
                    elif not self._handle_now(message):
                        logger.warning("unknown layer message %r", message.get("type"))
        except Exception:
            logger.exception("handling a layer message failed")
            await self._close(CLOSE_INTERNAL)
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

    async def notification_created(self, event: dict[str, Any]) -> None:
        if self._live(event):
            return
        notification: NotificationDict = event["n"]
        await self._send_stored(up_to=int(notification["id"]) - 1, wait=False)
        if self._closed:
            return
        self._enqueue(notification, committed_at=event.get("t"))

    async def notification_read(self, event: dict[str, Any]) -> None:
        self._read_elsewhere(event)

    def _read_elsewhere(self, event: dict[str, Any]) -> None:
        if event["user"] != self.user_id or event.get("exclude") == self.channel_name:
            return
        self._put(_frame({"type": "read", "ids": event["ids"]}), None)

    async def _send_stored(self, *, up_to: int | None, wait: bool) -> int:
        """Send stored notifications after ``self.last`` (up to ``up_to``), oldest first."""
        sent = 0
        while not self._closed:
            rows = await _db(selectors.notifications_after)(
                user_id=self.user_id, after=self.last, up_to=up_to, limit=REPLAY_PAGE
            )
            for row in rows:
                if wait:
                    await self._enqueue_wait(row)
                else:
                    self._enqueue(row, committed_at=None)
            sent += len(rows)
            if len(rows) < REPLAY_PAGE:
                break
        metrics.REPLAYED.inc(sent)
        return sent

    def _enqueue(self, notification: NotificationDict, *, committed_at: float | None) -> None:
        self.last = int(notification["id"])
        self._put(_frame({"type": "notification", "notification": notification}), committed_at)

    async def _enqueue_wait(self, notification: NotificationDict) -> None:
        self.last = int(notification["id"])
        await self._send_direct(_frame({"type": "notification", "notification": notification}))

    def _put(self, frame: str, committed_at: float | None) -> None:
        if self._closed:
            return
        outbox = self._outbox
        if outbox is None:
            outbox = self._outbox = deque()
        elif len(outbox) >= settings.NOTIFY_WS_SEND_QUEUE:
            metrics.DROPPED.inc()
            _task(self._close(CLOSE_SLOW))
            return
        outbox.append((frame, committed_at))
        if self._writer is None:
            self._writer = _task(self._write_outbox(outbox))

    async def _send_now(self, payload: dict[str, Any]) -> None:
        await self._send_direct(_frame(payload))

    async def _send_direct(self, frame: str) -> None:
        """Send after whatever is queued, waiting for the client to take it
        (replay, ready). Only handlers call this, one at a time, so nothing
        is queued behind the writer meanwhile."""
        if self._closed:
            return
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                if self._writer is not None:
                    await asyncio.wait((self._writer,))
                await self.base_send({"type": "websocket.send", "text": frame})
        except TimeoutError:
            await self._close(CLOSE_SLOW)
        except Exception:  # the client is gone; websocket.disconnect follows
            logger.debug("send after disconnect", exc_info=True)

    async def _write_outbox(self, outbox: deque[tuple[str, float | None]]) -> None:
        try:
            while outbox:
                frame, committed_at = outbox.popleft()
                await self.base_send({"type": "websocket.send", "text": frame})
                if committed_at is not None:
                    metrics.DELIVERED.inc()
                    metrics.DELIVERY_SECONDS.observe(max(0.0, time.time() - committed_at))
        except Exception:  # the client is gone; websocket.disconnect follows
            logger.debug("send after disconnect", exc_info=True)
        finally:
            # Nothing runs between the last check of ``outbox`` and here, so
            # nothing was added that this task would miss.
            self._writer = None
            self._outbox = None

    # -- client frames -> services ---------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self._closed:
            return
        if self._bucket.take() > 0:
            metrics.RATE_LIMITED.labels(scope="socket").inc()
            await self._close(CLOSE_ABUSE)
            return
        size = len(bytes_data) if bytes_data is not None else len((text_data or "").encode())
        if size > settings.NOTIFY_WS_MAX_FRAME_BYTES:
            await self._close(CLOSE_TOO_BIG)
            return
        if text_data is None:
            self._error("binary_not_supported", "Send JSON text frames.")
            return
        try:
            frame = orjson.loads(text_data)
        except orjson.JSONDecodeError:
            self._error("invalid_json", "The frame is not valid JSON.")
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            self._error("invalid_frame", 'A frame is a JSON object with a string "type".')
            return
        if frame["type"] == "ping":
            self._put(_frame({"type": "pong"}), None)
            await self._catch_up()
        elif frame["type"] == "read":
            await self._client_read(frame.get("ids"))
        else:
            self._error("unknown_type", f"Unknown frame type {frame['type'][:50]!r}.")

    async def _catch_up(self) -> None:
        """A safety net for a lost last push: pushes that were lost are
        normally noticed at the next push (a gap); if none comes, a client's
        ping (at most every CATCH_UP_INTERVAL) reads what it is missing."""
        now = time.monotonic()
        if now - self._caught_up_at < CATCH_UP_INTERVAL:
            return
        self._caught_up_at = now
        seq = await _db(selectors.sequence_state)(user_id=self.user_id)
        if seq.last_id > self.last:
            await self._send_stored(up_to=seq.last_id, wait=False)

    async def _client_read(self, ids: Any) -> None:
        if (
            not isinstance(ids, list)
            or not 1 <= len(ids) <= MAX_READ_IDS
            or any(parse_id(i) is None for i in ids)
        ):
            self._error("invalid_read", f"ids must be 1..{MAX_READ_IDS} notification id strings.")
            return
        await _db(services.notifications_mark_read)(
            user_id=self.user_id,
            ids=[int(i) for i in ids],
            strict=False,
            origin_channel=self.channel_name,
        )

    def _error(self, code: str, detail: str) -> None:
        self._put(_frame({"type": "error", "code": code, "detail": detail}), None)

    # -- closing ----------------------------------------------------------

    async def shutdown_close(self) -> None:
        await self._close(CLOSE_RESTART)

    async def _close(self, code: int) -> None:
        if self._closed:
            return
        self._closed = True
        metrics.SOCKET_CLOSES.labels(code=str(code)).inc()
        if self._writer is not None:
            self._writer.cancel()
        self._outbox = None
        try:
            await self.base_send({"type": "websocket.close", "code": code})
        except Exception:  # already gone
            logger.debug("close after disconnect", exc_info=True)
        # The close frame may wait behind unsent data (a client that does not
        # read); stop counting and feeding this socket now, not when the
        # transport finally goes.
        await self._leave()

    async def disconnect(self, code: int) -> None:
        self._closed = True
        self._stop_tasks()
        await self._leave()

    def _stop_tasks(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        for task in (self._writer, self._pump):
            if task is not None and task is not asyncio.current_task():
                task.cancel()

    async def _leave(self) -> None:
        if not self._joined:
            return
        self._joined = False
        state.sockets.discard(self)
        metrics.SOCKETS_OPEN.dec()
        try:
            await delivery.leave(self.user_id, self.channel_name)
        except Exception:
            logger.warning("group_discard failed", exc_info=True)
        await presence.backend().disconnected(self.user_id, self.channel_name)
