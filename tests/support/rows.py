"""Stored notifications written directly (no publish, no push), for tests
that need rows in a given state: each row's content goes into an event
row, shared by the rows given the same ``event_id``, as publishing does."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from notifications.models import Notification, NotificationEvent

_CONTENT = ("type", "title", "body", "data", "source")


def store(rows: Iterable[dict[str, Any]]) -> list[Notification]:
    """``rows``: user_id, seq, created_at, and optionally read_at, event_id
    (a UUID), type, title, body, data, source."""
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
    return Notification.objects.bulk_create(made)
