"""The one JSON shape of a notification, wherever it appears (API, frames,
layer messages).

``wire_fields`` builds everything but the id, once per publication (its
recipients share it); ``with_id`` completes it per recipient. A stored row
goes through the same two (``notification_dict``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

NotificationDict = dict[str, Any]


class StoredNotification(Protocol):
    """What ``notification_dict`` reads of a row (models.Notification)."""

    # Properties: on a recipient row, the content is read through its event.
    @property
    def seq(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def data(self) -> Any: ...
    @property
    def source(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def read_at(self) -> datetime | None: ...


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


def notification_dict(row: StoredNotification) -> NotificationDict:
    fields = wire_fields(
        type=row.type,
        title=row.title,
        body=row.body,
        data=row.data,
        source=row.source,
        created_at=row.created_at,
        read_at=row.read_at,
    )
    return with_id(row.seq, fields)
