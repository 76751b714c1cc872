"""The outbox's database side: claim due rows, look up targets, settle results.

All functions are synchronous (run on the worker's thread). Claiming leases
rows by moving their ``next_attempt_at`` ``LEASE`` into the future in the
claiming transaction: other workers skip them (PostgreSQL: ``FOR UPDATE SKIP
LOCKED`` while claiming; SQLite: its write lock serializes claims), and the
rows of a worker that dies come due again when the lease ends. Delivery is
therefore at least once: a worker killed between a push service's 201 and
the settle sends that message again after the lease, and the service worker
shows it once (its ``tag`` is the notification id).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Min
from django.utils import timezone

from notifications.push.models import PushOutbox, PushPreference, PushSubscription

LEASE = timedelta(seconds=60)


@dataclass(frozen=True)
class Owed:
    id: int
    user_id: str
    subscription_id: int | None
    mode: str
    payload: str
    committed_at: datetime
    expires_at: datetime
    attempts: int


@dataclass(frozen=True)
class Target:
    id: int
    endpoint: str
    p256dh: str
    auth: str


@dataclass
class Settlement:
    """What a batch's sends came to, written back in one transaction."""

    done: list[int] = field(default_factory=list)  # outbox rows finished
    # (row, subscription, next attempt, attempts): a resolved row to retry
    retry: list[tuple[Owed, int, datetime, int]] = field(default_factory=list)
    gone: list[int] = field(default_factory=list)  # subscriptions the service removed
    release: list[int] = field(default_factory=list)  # rows not attempted (shutdown)


@dataclass(frozen=True)
class NewRow:
    """An owed push as the publishing transaction records it."""

    user_id: str
    mode: str
    payload: str
    committed_at: datetime
    expires_at: datetime


_COPY = (
    "COPY notify_push_outbox (user_id, mode, payload, committed_at, expires_at,"
    " next_attempt_at, attempts) FROM STDIN"
)


def insert(rows: Sequence[NewRow]) -> None:
    """Insert owed pushes (in the caller's transaction). On PostgreSQL by
    ``COPY``: Django's ``bulk_create`` there binds client-side, quoting each
    array of values in Python, which was most of the outbox's cost in the
    publish (docs/performance.md); psycopg's ``COPY`` rows are formatted in C."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        PushOutbox.objects.bulk_create(
            [
                PushOutbox(
                    user_id=r.user_id,
                    mode=r.mode,
                    payload=r.payload,
                    committed_at=r.committed_at,
                    expires_at=r.expires_at,
                    next_attempt_at=r.committed_at,
                )
                for r in rows
            ],
            batch_size=1000,
        )
        return
    with connection.cursor() as cursor, cursor.copy(_COPY) as copy:
        for r in rows:
            copy.write_row(
                (r.user_id, r.mode, r.payload, r.committed_at, r.expires_at, r.committed_at, 0)
            )


_CLAIMED = (
    "pk", "user_id", "subscription_id", "mode", "payload", "committed_at", "expires_at", "attempts"
)  # fmt: skip


# One statement, so one round trip and no transaction around it: the rows
# are locked (skipping those another worker holds), leased and returned.
_CLAIM_PG = (
    "UPDATE notify_push_outbox SET next_attempt_at = %s WHERE id IN ("
    " SELECT id FROM notify_push_outbox WHERE next_attempt_at <= %s"
    " ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED)"
    " RETURNING id, user_id, subscription_id, mode, payload, committed_at, expires_at, attempts"
)


def claim(limit: int) -> list[Owed]:
    now = timezone.now()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_CLAIM_PG, [now + LEASE, now, limit])
            return [Owed(*values) for values in cursor.fetchall()]
    with transaction.atomic():  # SQLite: its write lock serializes claims
        due = PushOutbox.objects.filter(next_attempt_at__lte=now).order_by("next_attempt_at")
        rows = [Owed(*values) for values in due.values_list(*_CLAIMED)[:limit]]
        if rows:
            PushOutbox.objects.filter(pk__in=[r.id for r in rows]).update(
                next_attempt_at=now + LEASE
            )
    return rows


def renew(row_ids: Sequence[int]) -> None:
    """Extend the lease of rows still being sent (worker.py)."""
    PushOutbox.objects.filter(pk__in=list(row_ids)).update(next_attempt_at=timezone.now() + LEASE)


def targets(
    users: Iterable[str], subscription_ids: Iterable[int]
) -> tuple[dict[str, list[Target]], dict[int, tuple[str, Target]], dict[str, list[str]]]:
    """Subscriptions per user (to resolve), the given subscriptions with their
    owner (to retry: a moved one no longer matches), and muted patterns."""
    users = list(set(users))
    by_user: dict[str, list[Target]] = {}
    by_id: dict[int, tuple[str, Target]] = {}
    fields = ("pk", "user_id", "endpoint", "p256dh", "auth")
    wanted = PushSubscription.objects.filter(user_id__in=users).values_list(*fields)
    for pk, user, endpoint, p256dh, auth in wanted:
        by_user.setdefault(user, []).append(Target(pk, endpoint, p256dh, auth))
    retried = PushSubscription.objects.filter(pk__in=list(set(subscription_ids)))
    for pk, user, endpoint, p256dh, auth in retried.values_list(*fields):
        by_id[pk] = (user, Target(pk, endpoint, p256dh, auth))
    muted = dict(
        PushPreference.objects.filter(user_id__in=users).values_list("user_id", "muted_types")
    )
    return by_user, by_id, muted


@transaction.atomic
def settle(outcome: Settlement) -> None:
    if outcome.gone:  # cascades to the rows still owed to them
        PushSubscription.objects.filter(pk__in=outcome.gone).delete()
    finished = set(outcome.done)
    fresh: list[PushOutbox] = []
    for row, subscription_id, at, attempts in outcome.retry:
        if row.subscription_id is not None:
            PushOutbox.objects.filter(pk=row.id).update(next_attempt_at=at, attempts=attempts)
            continue
        finished.add(row.id)  # a resolved row per subscription replaces it
        fresh.append(
            PushOutbox(
                user_id=row.user_id,
                subscription_id=subscription_id,
                mode=row.mode,
                payload=row.payload,
                committed_at=row.committed_at,
                expires_at=row.expires_at,
                next_attempt_at=at,
                attempts=attempts,
            )
        )
    alive = set(
        PushSubscription.objects.filter(pk__in=[f.subscription_id for f in fresh]).values_list(
            "pk", flat=True
        )
    )
    PushOutbox.objects.bulk_create([f for f in fresh if f.subscription_id in alive])
    if finished and connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # an array parameter: bound in C
            cursor.execute("DELETE FROM notify_push_outbox WHERE id = ANY(%s)", [list(finished)])
    elif finished:
        PushOutbox.objects.filter(pk__in=list(finished)).delete()
    if outcome.release:
        PushOutbox.objects.filter(pk__in=outcome.release).update(next_attempt_at=timezone.now())


def depth() -> tuple[int, float]:
    """Rows owed and the age in seconds of the oldest (0 when none)."""
    count = PushOutbox.objects.count()
    oldest = PushOutbox.objects.aggregate(oldest=Min("committed_at"))["oldest"]
    age = (timezone.now() - oldest).total_seconds() if oldest is not None else 0.0
    return count, max(0.0, age)


def ids(rows: Sequence[Owed]) -> list[int]:
    return [row.id for row in rows]
