"""The one JSON shape of a notification, wherever it appears (API, frames,
layer messages).

``wire_fields`` builds everything but the id, once per publication (its
recipients share it); ``with_id`` completes it per recipient. Stored rows
go through the same two (selectors).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

NotificationDict = dict[str, Any]


def timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def wire_fields(
    *,
    type: str,
    title: str,
    body: str,
    data: Any,
    source: str,
    created_at: datetime,
    read_at: datetime | None,
) -> NotificationDict:
    """The notification's fields but its id, in wire form."""
    return {
        "type": type,
        "title": title,
        "body": body,
        "data": data,
        "source": source,
        "created_at": timestamp(created_at),
        "read_at": timestamp(read_at),
    }


def with_id(seq: int, fields: NotificationDict) -> NotificationDict:
    """One recipient's notification: its id first, then the shared fields."""
    return {"id": str(seq), **fields}
