"""One user's state for support (``manage.py notify_inspect``): sequence,
unread count, the latest notifications, where the user is connected, and
Web Push (subscriptions, shown masked, and owed pushes).

Sync reads, like the selectors; presence comes from Redis directly, so it
covers every process of the deployment (without Redis there is one process
whose in-memory presence another process cannot see).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, Max, Min

from notifications import processes, recipients_pg, redis_clients, selectors
from notifications.models import Notification, NotificationEvent
from notifications.presence import key_for as presence_key
from notifications.push.endpoints import masked
from notifications.push.models import PushOutbox, PushSubscription

LATEST = 10


@dataclass(frozen=True)
class ProcessConnections:
    process_id: str
    host: str | None  # the pod's name in Kubernetes
    pid: int | None
    connections: int


@dataclass(frozen=True)
class Presence:
    shared: bool  # False: no Redis, presence lives in the server's memory only
    connections: int | None
    processes: list[ProcessConnections] = field(default_factory=list)


@dataclass(frozen=True)
class Owed:
    count: int
    oldest_committed_at: str | None  # the oldest owed push's notification
    next_attempt_at: str | None
    most_attempts: int


@dataclass(frozen=True)
class PushState:
    enabled: bool  # Web Push configured (VAPID_PRIVATE_KEY) where this runs
    # endpoint: host and a masked tail only (a capability URL); no keys.
    subscriptions: list[dict[str, Any]]
    owed: Owed


@dataclass(frozen=True)
class UserReport:
    user_id: str
    last_id: int
    purged_through: int
    unread: int
    presence: Presence
    latest: list[dict[str, Any]]
    push: PushState

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def user_report(user_id: str) -> UserReport:
    state = selectors.sequence_state(user_id=user_id)
    return UserReport(
        user_id=user_id,
        last_id=state.last_id,
        purged_through=state.purged_through,
        unread=selectors.unread_count(user_id=user_id),
        presence=presence(user_id),
        latest=latest(user_id),
        push=push_state(user_id),
    )


def latest(user_id: str, limit: int = LATEST) -> list[dict[str, Any]]:
    """The newest notifications, newest first, with read state. The rows,
    then their events by (id, created_at): a join would have PostgreSQL's
    planner weigh every day's event partition (notifications/selectors.py)."""
    rows = _latest_rows(user_id, limit)
    if not rows:
        return []
    first, last = min(r[2] for r in rows), max(r[2] for r in rows)
    events = {
        event.pk: event
        for event in NotificationEvent.objects.filter(
            pk__in=[ref for _s, ref, _d, _r in rows],
            created_at__gte=_midnight(first),
            created_at__lt=_midnight(last + timedelta(days=1)),
        )
    }
    return [
        {
            "id": str(seq),  # as the API shows ids: strings of digits
            "type": events[ref].type,
            "title": events[ref].title,
            "source": events[ref].source,
            "event_id": str(events[ref].event_id),
            "created_at": events[ref].created_at.isoformat(),
            "read": read_at is not None,
            "read_at": read_at.isoformat() if read_at else None,
        }
        for seq, ref, _day, read_at in rows
    ]


def _latest_rows(user_id: str, limit: int) -> list[tuple[int, int, date, Any]]:
    """(seq, event ref, UTC day, read_at), newest first."""
    if connection.vendor == "postgresql":
        return recipients_pg.latest(user_id, limit)
    return [
        (seq, int(ref), created.astimezone(UTC).date(), read_at)
        for seq, ref, created, read_at in Notification.objects.filter(user_id=user_id)
        .order_by("-seq")
        .values_list("seq", "event_id", "created_at", "read_at")[:limit]
    ]


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def push_state(user_id: str) -> PushState:
    subscriptions = PushSubscription.objects.filter(user_id=user_id).order_by("pk")
    found = PushOutbox.objects.filter(user_id=user_id).aggregate(
        count=Count("id"),
        oldest=Min("committed_at"),
        next=Min("next_attempt_at"),
        attempts=Max("attempts"),
    )
    return PushState(
        enabled=settings.NOTIFY_PUSH is not None,
        subscriptions=[
            {
                "id": sub.pk,
                "endpoint": masked(sub.endpoint),
                "created_at": sub.created_at.isoformat(),
                "expiration_time": sub.expiration_time,
            }
            for sub in subscriptions
        ],
        owed=Owed(
            count=found["count"],
            oldest_committed_at=_iso(found["oldest"]),
            next_attempt_at=_iso(found["next"]),
            most_attempts=found["attempts"] or 0,
        ),
    )


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def presence(user_id: str) -> Presence:
    cfg = redis_clients.configured()
    if cfg is None:
        return Presence(shared=False, connections=None)
    client = redis_clients.sync_client(cfg)
    try:
        key = presence_key(user_id, processes.PREFIX)
        members: list[bytes] = client.zrangebyscore(key, time.time(), "+inf")
        counts = Counter(member.decode().split(":", 1)[0] for member in members)
        known = processes.describe(client, counts)
    finally:
        client.close()
    # As presence counts: the members of a process without its key (gone)
    # do not count; whoever counts the user next removes them.
    counts = Counter({p: n for p, n in counts.items() if known.get(p)})
    found = [
        ProcessConnections(
            process_id=process_id,
            host=known.get(process_id, {}).get("host"),
            pid=known.get(process_id, {}).get("pid"),
            connections=count,
        )
        for process_id, count in sorted(counts.items())
    ]
    return Presence(shared=True, connections=sum(counts.values()), processes=found)
