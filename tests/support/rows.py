"""Stored notifications, for tests: written directly (no publish, no push)
in a given state, and read back.

Every test that looks at stored rows goes through this module instead of
querying ``Notification`` itself: the per-recipient table's layout differs
between databases (SQLite keeps the simple table; PostgreSQL's rows carry
the user key and a day, notifications/recipient_layout.py), and this is the
one place that knows both. Rows are read as ``Stored`` values: the
recipient's user id, id and read state with its event's content.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from django.db import connection
from django.db.models import QuerySet

from notifications.models import Notification, NotificationEvent

_CONTENT = ("type", "title", "body", "data", "source")


@dataclass(frozen=True)
class Stored:
    """One recipient's stored notification, as the wire would show it."""

    user_id: str
    seq: int
    read_at: datetime | None
    created_at: datetime  # the event's (the wire's)
    day: date  # the UTC day the row is kept under (retention, partitions)
    event_id: uuid.UUID  # the public event id
    event_ref: int  # the event row's primary key
    type: str
    title: str
    body: str
    data: Any
    source: str


def store(rows: Iterable[dict[str, Any]]) -> None:
    """``rows``: user_id, seq, created_at, and optionally read_at, event_id
    (a UUID), type, title, body, data, source. On PostgreSQL each user gets
    a counter row (for its key) if it has none, at ``last_id`` 0."""
    events: dict[uuid.UUID, NotificationEvent] = {}
    made: list[Notification] = []
    for row in rows:
        event_id = row.get("event_id") or uuid.uuid4()
        event = events.get(event_id)
        if event is None:
            content = {name: row[name] for name in _CONTENT if name in row}
            content.setdefault("type", "test.stored")
            content.setdefault("source", "shop")
            event = events[event_id] = NotificationEvent.objects.create(
                event_id=event_id, created_at=row["created_at"], **content
            )
        made.append(
            Notification(
                user_id=row["user_id"],
                seq=row["seq"],
                event=event,
                created_at=row["created_at"],
                read_at=row.get("read_at"),
            )
        )
    if connection.vendor == "postgresql":
        _store_keyed(made)
    else:
        Notification.objects.bulk_create(made)


def _store_keyed(made: list[Notification]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO notify_user_sequence (user_id, last_id, purged_through) "
            "SELECT u, 0, 0 FROM unnest(%s::text[]) AS u ON CONFLICT DO NOTHING",
            [sorted({row.user_id for row in made})],
        )
        cursor.executemany(
            "INSERT INTO notify_recipient (user_key, day, seq, event_ref, read_at) "
            "SELECT key, %s, %s, %s, %s FROM notify_user_sequence WHERE user_id = %s",
            [
                (_day(row.created_at), row.seq, row.event.pk, row.read_at, row.user_id)
                for row in made
            ],
        )


def stored(
    user_id: str | None = None,
    *,
    seqs: Collection[int] | None = None,
    event_id: uuid.UUID | None = None,
) -> list[Stored]:
    """The stored rows (of one user, of some ids, of one public event),
    ordered by user id, then id."""
    if connection.vendor == "postgresql":
        found = [_keyed(row) for row in _select(_READ, user_id, seqs, event_id)]
        return sorted(found, key=lambda row: (row.user_id, row.seq))
    return [
        Stored(
            user_id=row.user_id,
            seq=row.seq,
            read_at=row.read_at,
            created_at=row.event.created_at,
            day=_day(row.created_at),
            event_id=row.event.event_id,
            event_ref=row.event.pk,
            type=row.event.type,
            title=row.event.title,
            body=row.event.body,
            data=row.event.data,
            source=row.event.source,
        )
        for row in _rows(user_id, seqs, event_id).select_related("event").order_by("user_id", "seq")
    ]


def count(user_id: str | None = None, *, unread: bool = False) -> int:
    """How many rows are stored (of one user; only the unread ones)."""
    if connection.vendor == "postgresql":
        sql = _COUNT + (" AND r.read_at IS NULL" if unread else "")
        return int(_select(sql, user_id, None, None)[0][0])
    rows = _rows(user_id, None, None)
    return (rows.filter(read_at__isnull=True) if unread else rows).count()


def read_state(user_id: str) -> dict[int, bool]:
    """Each of the user's ids: read or not."""
    return {row.seq: row.read_at is not None for row in stored(user_id)}


def seqs_of(user_id: str) -> list[int]:
    """The user's stored ids, ascending."""
    return [row.seq for row in stored(user_id)]


def set_read_at(user_id: str, seqs: Collection[int], when: datetime | None) -> None:
    """Mark the user's rows ``seqs`` read at ``when`` (None: unread)."""
    if connection.vendor == "postgresql":
        _update("read_at = %s", [when], user_id, seqs)
    else:
        _rows(user_id, seqs, None).update(read_at=when)


def age(user_id: str, seqs: Collection[int], when: datetime) -> None:
    """Keep the user's rows ``seqs`` as if written at ``when`` (what the
    retention purge goes by); their events are left as they are."""
    if connection.vendor == "postgresql":
        _update("day = %s", [_day(when)], user_id, seqs)
    else:
        _rows(user_id, seqs, None).update(created_at=when)


def move_event(event_ref: int, when: datetime) -> None:
    """Give one event, and every row of it, the creation time ``when``."""
    NotificationEvent.objects.filter(pk=event_ref).update(created_at=when)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE notify_recipient SET day = %s WHERE event_ref = %s", [_day(when), event_ref]
            )
    else:
        Notification.objects.filter(event_id=event_ref).update(created_at=when)


def _rows(
    user_id: str | None, seqs: Collection[int] | None, event_id: uuid.UUID | None
) -> QuerySet[Notification]:
    rows = Notification.objects.all()
    if user_id is not None:
        rows = rows.filter(user_id=user_id)
    if seqs is not None:
        rows = rows.filter(seq__in=list(seqs))
    if event_id is not None:
        rows = rows.filter(event__event_id=event_id)
    return rows


def _day(when: datetime) -> date:
    return when.astimezone(UTC).date()


# PostgreSQL: the compact table, the user id through the key.
_FROM = (
    " FROM notify_recipient r JOIN notify_user_sequence s ON s.key = r.user_key"
    " JOIN notify_event e ON e.id = r.event_ref"
    " WHERE (%s::text IS NULL OR s.user_id = %s::text)"
    " AND (%s::bigint[] IS NULL OR r.seq = ANY(%s::bigint[]))"
    " AND (%s::uuid IS NULL OR e.event_id = %s::uuid)"
)
_READ = (
    "SELECT s.user_id, r.seq, r.read_at, e.created_at, r.day, e.event_id, e.id, e.type,"
    " e.title, e.body, e.data, e.source" + _FROM
)
_COUNT = "SELECT count(*)" + _FROM


def _keyed(row: tuple[Any, ...]) -> Stored:
    *head, data, source = row
    # Django's psycopg setup leaves jsonb as text (JSONField parses it).
    return Stored(*head, data=json.loads(data) if isinstance(data, str) else data, source=source)


def _select(
    sql: str, user_id: str | None, seqs: Collection[int] | None, event_id: uuid.UUID | None
) -> list[tuple[Any, ...]]:
    listed = None if seqs is None else list(seqs)
    with connection.cursor() as cursor:
        cursor.execute(sql, [user_id, user_id, listed, listed, event_id, event_id])
        return list(cursor.fetchall())


def _update(assign: str, values: list[Any], user_id: str, seqs: Collection[int]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE notify_recipient SET {assign} WHERE seq = ANY(%s) AND user_key = "
            "(SELECT key FROM notify_user_sequence WHERE user_id = %s)",
            [*values, list(seqs), user_id],
        )
