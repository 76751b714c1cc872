"""The only owner of the channel layer: group names and every group_send.

The layer is a fast path, not a queue: a push can be lost (Redis blip,
process restart). Losing one never loses a notification: it is in the
database, the consumer fills gaps from there, and clients resume with
``since``. Failures are counted in ``notify_notifications_dropped_total``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from notifications import metrics
from notifications.rendering import NotificationDict

logger = logging.getLogger(__name__)

NOTIFICATION_EVENT = "notification.created"
READ_EVENT = "notification.read"


def group_name(user_id: str) -> str:
    """A layer-safe group name per user (user ids may hold any character)."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=16).hexdigest()
    return f"u.{digest}"


def push_notifications(
    pushes: Sequence[tuple[str, NotificationDict]], *, committed_at: float
) -> None:
    """After commit: one message per recipient to that user's group."""
    messages = [
        (
            group_name(user),
            {"type": NOTIFICATION_EVENT, "user": user, "n": notification, "t": committed_at},
        )
        for user, notification in pushes
    ]
    metrics.ACCEPTED.inc(len(messages))
    _send(messages)


def push_read(user_id: str, ids: Sequence[int], *, exclude_channel: str | None) -> None:
    message = {
        "type": READ_EVENT,
        "user": user_id,
        "ids": [str(i) for i in ids],
        "exclude": exclude_channel or "",
    }
    _send([(group_name(user_id), message)], counted=False)


def open_channel(deliver: Callable[[dict[str, Any]], None]) -> str | None:
    """A consumer's own channel whose messages are handed to ``deliver`` as
    they arrive, in order (no queue and no receiving task per socket); None
    when the layer has no such channels (the consumer then receives the way
    channels does)."""
    opener = getattr(get_channel_layer(), "new_direct_channel", None)
    return None if opener is None else str(opener(deliver))


def close_channel(channel_name: str) -> None:
    get_channel_layer().drop_direct_channel(channel_name)


async def join(user_id: str, channel_name: str) -> None:
    await get_channel_layer().group_add(group_name(user_id), channel_name)


async def leave(user_id: str, channel_name: str) -> None:
    await get_channel_layer().group_discard(group_name(user_id), channel_name)


async def layer_health() -> str | None:
    layer = get_channel_layer()
    health = getattr(layer, "health", None)
    return await health() if health is not None else None


# The serving event loop (bound at start-up and by the publish path). Pushes
# from worker threads are handed to it without waiting: the commit is done,
# and the writer thread goes on to the next group. call_soon_threadsafe keeps
# them in the order they were handed over, which is commit order.
_loop: asyncio.AbstractEventLoop | None = None
_in_flight: set[asyncio.Task[None]] = set()


def bind_loop(loop: asyncio.AbstractEventLoop) -> None:
    global _loop
    _loop = loop


def _send(messages: list[tuple[str, dict[str, Any]]], *, counted: bool = True) -> None:
    # Every push is attempted: a breaker that skipped pushes for a while
    # after a failure also skipped the first ones after Redis came back, to
    # sockets that had already resumed (found by tests/production).
    loop = _loop
    if loop is not None and loop.is_running():
        try:
            loop.call_soon_threadsafe(_start_send, loop, messages, counted)
            return
        except RuntimeError:  # closed in the meantime
            pass
    try:
        async_to_sync(_send_many)(messages)
    except Exception:
        _failed(messages, counted)


def _start_send(
    loop: asyncio.AbstractEventLoop, messages: list[tuple[str, dict[str, Any]]], counted: bool
) -> None:
    soon = getattr(get_channel_layer(), "group_send_soon", None)
    if soon is None:
        # The loop's own create_task: asyncio.ensure_future looks the running
        # loop up first, a getpid() system call per push on Python 3.11.
        task = loop.create_task(_send_logged(messages, counted))
        _in_flight.add(task)
        task.add_done_callback(_in_flight.discard)
        return
    # The Redis layer queues the PUBLISHes at once and reports each shard's
    # write: no task, coroutine chain or shield per commit group
    # (docs/performance.md, "Event loop per publish, fifth round").
    try:
        outcomes = soon(loop, messages)
    except Exception:
        _failed(messages, counted)
        return
    _Outcome(messages, counted).watch(outcomes)


class _Outcome:
    """A push's shard writes: the first that failed counts the push as
    failed, once (as the first error of a gather did)."""

    __slots__ = ("counted", "failed", "messages")

    def __init__(self, messages: list[tuple[str, dict[str, Any]]], counted: bool) -> None:
        self.messages = messages
        self.counted = counted
        self.failed = False

    def watch(self, outcomes: list[asyncio.Future[None]]) -> None:
        for outcome in outcomes:
            outcome.add_done_callback(self._done)

    def _done(self, outcome: asyncio.Future[None]) -> None:
        if self.failed or outcome.cancelled():  # cancelled: the process is stopping
            return
        error = outcome.exception()
        if error is not None:
            self.failed = True
            _failed(self.messages, self.counted, error)


async def _send_logged(messages: list[tuple[str, dict[str, Any]]], counted: bool) -> None:
    try:
        await _send_many(messages)
    except Exception:
        _failed(messages, counted)


def _failed(
    messages: list[tuple[str, dict[str, Any]]],
    counted: bool,
    error: BaseException | None = None,
) -> None:
    # The commit stands; the push is the fast path. Sockets recover the ids
    # from the database on their next message or reconnect.
    logger.warning(
        "channel layer push failed for %d messages", len(messages), exc_info=error or True
    )
    if counted:
        metrics.DROPPED.inc(len(messages))


async def _send_many(messages: list[tuple[str, dict[str, Any]]]) -> None:
    layer = get_channel_layer()
    many = getattr(layer, "group_send_many", None)
    if many is not None:
        await many(messages)
        return
    for group, message in messages:
        await layer.group_send(group, message)
