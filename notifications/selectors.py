"""Reads. Sync functions; async callers wrap them (database_sync_to_async)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import QuerySet

from notifications.models import Notification, NotificationEvent, UserSequence
from notifications.rendering import NotificationDict, wire_fields, with_id


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
    qs = _rows().filter(user_id=user_id, seq__gt=after)
    if up_to is not None:
        qs = qs.filter(seq__lte=up_to)
    return _dicts(qs.order_by("seq")[:limit])


@dataclass(frozen=True)
class Page:
    results: list[NotificationDict]
    next_before: int | None  # cursor for the next page, None on the last


def notifications_page(
    *, user_id: str, unread: bool = False, limit: int = 50, before: int | None = None
) -> Page:
    """Newest first; ``before`` is the id the next page starts below."""
    qs = _rows().filter(user_id=user_id)
    if unread:
        qs = qs.filter(read_at__isnull=True)
    if before is not None:
        qs = qs.filter(seq__lt=before)
    rows = _dicts(qs.order_by("-seq")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(results=rows, next_before=int(rows[-1]["id"]) if more and rows else None)


def notification_get(*, user_id: str, seq: int) -> NotificationDict | None:
    found = _dicts(_rows().filter(user_id=user_id, seq=seq)[:1])
    return found[0] if found else None


def unread_count(*, user_id: str) -> int:
    return Notification.objects.filter(user_id=user_id, read_at__isnull=True).count()


def _rows() -> QuerySet[Notification]:
    return Notification.objects.all()


def _dicts(rows: QuerySet[Notification]) -> list[NotificationDict]:
    """Wire dicts for the selected recipient rows: the rows, then their
    events in a second query by (id, created_at). One join would make
    PostgreSQL's planner cost a probe of every day's event partition per row
    (it prices no run-time pruning) and pick a scan of all events instead;
    one query per day of the rows, given as constants, probes only that day
    (notifications/partitions.py). No model instances: a 500-row replay spent
    most of its time building them."""
    found = list(rows.values_list("seq", "event_id", "created_at", "read_at"))
    if not found:
        return []
    events = {pk: content for pk, *content in _events(found)}
    result: list[NotificationDict] = []
    for seq, ref, created, read in found:
        type_, title, body, data, source = events[int(ref)]
        fields = wire_fields(
            type=type_,
            title=title,
            body=body,
            data=data,
            source=source,
            created_at=created,
            read_at=read,
        )
        result.append(with_id(seq, fields))
    return result


def _events(found: list[tuple[Any, ...]]) -> QuerySet[Any]:
    """The events of (seq, event_ref, created_at, read_at) rows, one UNION
    ALL arm per UTC day, so each arm looks up its ids in one partition."""
    by_day: dict[date, set[int]] = {}
    for _seq, ref, created, _read in found:
        by_day.setdefault(created.astimezone(UTC).date(), set()).add(ref)
    arms = [
        NotificationEvent.objects.filter(
            pk__in=refs,
            created_at__gte=datetime(day.year, day.month, day.day, tzinfo=UTC),
            created_at__lt=datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1),
        ).values_list("pk", "type", "title", "body", "data", "source")
        for day, refs in sorted(by_day.items())
    ]
    return arms[0].union(*arms[1:], all=True) if len(arms) > 1 else arms[0]


@dataclass(frozen=True)
class StreamStart:
    sequence: SequenceState
    replay: list[NotificationDict]  # the first page after ``after`` (empty without since)
    unread: int


def stream_start(*, user_id: str, since: int | None, limit: int = 500) -> StreamStart:
    """What a new stream reads before ``ready``, in one call (one thread hop
    and one pooled connection per handshake instead of three): the user's
    sequence and unread count in one statement, then the first replay page
    after ``min(since, last_id)`` when ``since`` is given."""
    sequence, unread = _opening(user_id)
    replay: list[NotificationDict] = []
    if since is not None and sequence.last_id > since:
        replay = notifications_after(user_id=user_id, after=since, limit=limit)
    return StreamStart(sequence, replay, unread)


def _opening(user_id: str) -> tuple[SequenceState, int]:
    """``sequence_state`` and ``unread_count`` in one round trip, in SQL of
    its own: a reconnect storm runs this once per socket, and building and
    compiling the two querysets cost about four times the CPU of the
    statement itself (docs/performance.md, "Handshakes")."""
    with connection.cursor() as cursor:
        cursor.execute(_opening_sql(connection.vendor), [user_id, user_id])
        last_id, purged_through, unread = cursor.fetchone()
    return SequenceState(last_id=last_id or 0, purged_through=purged_through or 0), int(unread)


@cache
def _opening_sql(vendor: str) -> str:
    """The statement, with the models' table and column names (quoted for
    ``vendor``; cached per vendor, as the names are fixed)."""
    q = connection.ops.quote_name
    seq, rows = UserSequence._meta, Notification._meta

    def col(meta: Any, field: str) -> str:
        return q(meta.get_field(field).column)

    return (
        f"SELECT s.{col(seq, 'last_id')}, s.{col(seq, 'purged_through')}, "  # noqa: S608
        f"(SELECT COUNT(*) FROM {q(rows.db_table)} r WHERE r.{col(rows, 'user_id')} = %s "
        f"AND r.{col(rows, 'read_at')} IS NULL) "
        f"FROM (SELECT 1) o LEFT JOIN {q(seq.db_table)} s ON s.{col(seq, 'user_id')} = %s"
    )
