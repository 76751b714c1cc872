"""Reads. Sync functions; async callers wrap them (database_sync_to_async)."""

from __future__ import annotations

from dataclasses import dataclass

from notifications.models import Notification, UserSequence
from notifications.rendering import NotificationDict, notification_dict


@dataclass(frozen=True)
class SequenceState:
    last_id: int  # highest committed id of the user (0: none yet)
    purged_through: int  # ids at or below this may have been purged


def sequence_state(*, user_id: str) -> SequenceState:
    row = UserSequence.objects.filter(user_id=user_id).values_list("last_id", "purged_through")
    found = row.first()
    if found is None:
        return SequenceState(last_id=0, purged_through=0)
    return SequenceState(last_id=found[0], purged_through=found[1])


def notifications_after(
    *, user_id: str, after: int, up_to: int | None = None, limit: int = 500
) -> list[NotificationDict]:
    """Stored notifications with ``after < id <= up_to``, oldest first."""
    qs = Notification.objects.filter(user_id=user_id, seq__gt=after)
    if up_to is not None:
        qs = qs.filter(seq__lte=up_to)
    return [notification_dict(row) for row in qs.order_by("seq")[:limit]]


@dataclass(frozen=True)
class Page:
    results: list[NotificationDict]
    next_before: int | None  # cursor for the next page, None on the last


def notifications_page(
    *, user_id: str, unread: bool = False, limit: int = 50, before: int | None = None
) -> Page:
    """Newest first; ``before`` is the id the next page starts below."""
    qs = Notification.objects.filter(user_id=user_id)
    if unread:
        qs = qs.filter(read_at__isnull=True)
    if before is not None:
        qs = qs.filter(seq__lt=before)
    rows = list(qs.order_by("-seq")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(
        results=[notification_dict(row) for row in rows],
        next_before=rows[-1].seq if more and rows else None,
    )


def notification_get(*, user_id: str, seq: int) -> NotificationDict | None:
    row = Notification.objects.filter(user_id=user_id, seq=seq).first()
    return notification_dict(row) if row is not None else None


def unread_count(*, user_id: str) -> int:
    return Notification.objects.filter(user_id=user_id, read_at__isnull=True).count()


@dataclass(frozen=True)
class StreamStart:
    sequence: SequenceState
    replay: list[NotificationDict]  # the first page after ``after`` (empty without since)
    unread: int


def stream_start(*, user_id: str, since: int | None, limit: int = 500) -> StreamStart:
    """What a new stream reads before ``ready``, in one call (one thread hop
    and one pooled connection per handshake instead of three): the user's
    sequence, the first replay page after ``min(since, last_id)`` when
    ``since`` is given, and the unread count."""
    sequence = sequence_state(user_id=user_id)
    replay: list[NotificationDict] = []
    if since is not None and sequence.last_id > since:
        replay = notifications_after(user_id=user_id, after=since, limit=limit)
    return StreamStart(sequence, replay, unread_count(user_id=user_id))
