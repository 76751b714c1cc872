"""The one JSON shape of a notification, wherever it appears (API, frames)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from notifications.models import Notification

NotificationDict = dict[str, Any]


def timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def notification_dict(row: Notification) -> NotificationDict:
    return {
        "id": str(row.seq),
        "type": row.type,
        "title": row.title,
        "body": row.body,
        "data": row.data,
        "source": row.source,
        "created_at": timestamp(row.created_at),
        "read_at": timestamp(row.read_at),
    }
