"""Writes. Every change to stored notifications goes through here.

Each service is one transaction; pushes are scheduled with
``transaction.on_commit`` so nothing is announced that could still roll back.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from notifications import delivery
from notifications.db import with_fresh_connections
from notifications.errors import IdempotencyConflict, NotificationNotFound, RateLimited
from notifications.group_commit import AsyncGroupCommitter
from notifications.models import (
    IdempotencyRecord,
    Notification,
    UserSequence,
    insert_notifications,
)
from notifications.ratelimit import publisher_limiter
from notifications.rendering import NotificationDict, timestamp

IDEMPOTENCY_TTL = timedelta(hours=24)
_SEQ_CHUNK = 500
_INSERT_BATCH = 1000


@dataclass(frozen=True)
class PublishResult:
    event_id: uuid.UUID
    recipients: int
    replayed: bool = False


@dataclass(frozen=True)
class Publication:
    """One publish request, validated. ``recipients`` may repeat; they count once."""

    source: str
    recipients: Sequence[str]
    type: str
    title: str = ""
    body: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    request_hash: str = ""


def request_hash(data: dict[str, Any]) -> str:
    """What makes two publish requests "the same body" for idempotency."""
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


def notifications_publish(
    *,
    source: str,
    recipients: Sequence[str],
    type: str,
    title: str = "",
    body: str = "",
    data: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    request_hash: str = "",
) -> PublishResult:
    """Store one notification per recipient (deduplicated) and push them after commit.

    The synchronous entry (the demo page, tools, in-process tests); the HTTP
    API publishes through ``notifications_publish_async``."""
    publication = Publication(
        source=source,
        recipients=recipients,
        type=type,
        title=title,
        body=body,
        data=data if data is not None else {},
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    (outcome,) = notifications_publish_many(publications=[publication])
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


@transaction.atomic
def notifications_publish_many(
    *, publications: Sequence[Publication]
) -> list[PublishResult | IdempotencyConflict]:
    """Commit several publish requests in one transaction (group commit).

    Each request gets its own outcome: its result, the earlier answer for a
    repeated idempotency key, or an IdempotencyConflict that stores nothing
    for that request alone. A database error fails the whole call.
    Locks are taken in one global order (idempotency keys, then users, both
    sorted), so concurrent batches in other processes cannot deadlock.
    """
    now = timezone.now()
    outcomes: list[PublishResult | IdempotencyConflict | None] = [None] * len(publications)
    accepted: list[tuple[int, Publication, list[str], uuid.UUID]] = []
    claim_order = sorted(
        range(len(publications)),
        key=lambda i: (publications[i].source, publications[i].idempotency_key or ""),
    )
    for index in claim_order:
        publication = publications[index]
        users = list(dict.fromkeys(publication.recipients))
        event_id = uuid.uuid4()
        if publication.idempotency_key is not None:
            try:
                earlier = _idempotency_claim(
                    source=publication.source,
                    key=publication.idempotency_key,
                    request_hash=publication.request_hash,
                    event_id=event_id,
                    recipients=len(users),
                    now=now,
                )
            except IdempotencyConflict as conflict:
                outcomes[index] = conflict
                continue
            if earlier is not None:
                outcomes[index] = earlier
                continue
        accepted.append((index, publication, users, event_id))

    accepted.sort(key=lambda item: item[0])  # ids follow arrival order
    wanted = Counter(user for _i, _p, users, _e in accepted for user in users)
    last_ids = _allocate_ids(wanted)
    next_id = {user: last_ids[user] - count + 1 for user, count in wanted.items()}
    inserts: list[tuple[dict[str, Any], list[tuple[str, int]]]] = []
    pushes: list[tuple[str, NotificationDict]] = []
    for index, publication, users, event_id in accepted:
        shared: NotificationDict = {
            "type": publication.type,
            "title": publication.title,
            "body": publication.body,
            "data": publication.data,
            "source": publication.source,
            "created_at": timestamp(now),
            "read_at": None,
        }
        rows: list[tuple[str, int]] = []
        for user in users:
            seq = next_id[user]
            next_id[user] = seq + 1
            rows.append((user, seq))
            pushes.append((user, {"id": str(seq), **shared}))
        stored = {**shared, "event_id": event_id, "created_at": now}
        inserts.append((stored, rows))
        outcomes[index] = PublishResult(event_id=event_id, recipients=len(users))
    insert_notifications(inserts)
    if pushes:
        transaction.on_commit(lambda: delivery.push_notifications(pushes, committed_at=time.time()))
    return [outcome for outcome in outcomes if outcome is not None]


PublishOutcome = PublishResult | IdempotencyConflict | RateLimited


def notifications_publish_rated(*, publications: Sequence[Publication]) -> list[PublishOutcome]:
    """Each publisher's rate limits (one call per publisher for the whole
    group: a request and its recipients each, in order), then one transaction
    for those admitted."""
    by_source: dict[str, list[int]] = {}
    for index, publication in enumerate(publications):
        by_source.setdefault(publication.source, []).append(index)
    outcomes: list[PublishOutcome | None] = [None] * len(publications)
    admitted: list[int] = []
    for source, indexes in by_source.items():
        sizes = [len(set(publications[i].recipients)) for i in indexes]
        flags, retry = publisher_limiter.admit(source, sizes)
        for index, ok in zip(indexes, flags, strict=True):
            if ok:
                admitted.append(index)
            else:
                outcomes[index] = RateLimited(retry_after=retry)
    admitted.sort()
    if admitted:
        stored = notifications_publish_many(publications=[publications[i] for i in admitted])
        for index, outcome in zip(admitted, stored, strict=True):
            outcomes[index] = outcome
    return [outcome for outcome in outcomes if outcome is not None]


# The serving path: requests on the event loop, commits on one writer thread
# that keeps its connection (notifications/group_commit.py).
_writer: AsyncGroupCommitter[Publication, PublishOutcome] = AsyncGroupCommitter(
    with_fresh_connections(lambda group: notifications_publish_rated(publications=group)),
    executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="publish-writer"),
    size_of=lambda publication: max(1, len(publication.recipients)),
    key_of=lambda publication: publication.source,
)


async def notifications_publish_async(*, publication: Publication) -> PublishResult:
    """Publish from the event loop: rate limit, commit (shared with whatever
    else is waiting), push after commit. Raises RateLimited, IdempotencyConflict
    or a database error."""
    delivery.bind_loop(asyncio.get_running_loop())
    outcome = await _writer.submit(publication)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def _idempotency_claim(
    *,
    source: str,
    key: str,
    request_hash: str,
    event_id: uuid.UUID,
    recipients: int,
    now: Any,
) -> PublishResult | None:
    """Claim the key for this request, or return the first request's answer.

    The insert takes the unique index entry; a concurrent duplicate blocks on
    it until the first commits (then sees its record) or rolls back (then wins).
    """
    try:
        with transaction.atomic():
            IdempotencyRecord.objects.create(
                source=source,
                key=key,
                request_hash=request_hash,
                event_id=event_id,
                recipients=recipients,
                created_at=now,
            )
        return None
    except IntegrityError:
        record = IdempotencyRecord.objects.select_for_update().get(source=source, key=key)
    if record.created_at < now - IDEMPOTENCY_TTL:
        # Expired: the key starts a new life with this request.
        record.request_hash = request_hash
        record.event_id = event_id
        record.recipients = recipients
        record.created_at = now
        record.save()
        return None
    if record.request_hash != request_hash:
        raise IdempotencyConflict()
    return PublishResult(event_id=record.event_id, recipients=record.recipients, replayed=True)


def _allocate_ids(wanted: Counter[str]) -> dict[str, int]:
    """Add each user's count to their counter in this transaction; user -> new last id.

    Rows are locked in sorted order, so concurrent multi-recipient publishes
    cannot deadlock on each other's counters.
    """
    ordered = sorted(wanted)
    result: dict[str, int] = {}
    with connection.cursor() as cursor:
        for start in range(0, len(ordered), _SEQ_CHUNK):
            chunk = ordered[start : start + _SEQ_CHUNK]
            counts = [wanted[user] for user in chunk]
            if connection.vendor == "postgresql":
                cursor.execute(
                    "INSERT INTO notify_user_sequence (user_id, last_id, purged_through) "
                    "SELECT u, c, 0 FROM unnest(%s::text[], %s::bigint[]) AS t(u, c) ORDER BY u "
                    "ON CONFLICT (user_id) DO UPDATE "
                    "SET last_id = notify_user_sequence.last_id + EXCLUDED.last_id "
                    "RETURNING user_id, last_id",
                    [chunk, counts],
                )
            else:
                values = ", ".join(["(%s, %s, 0)"] * len(chunk))
                params: list[Any] = []
                for user, count in zip(chunk, counts, strict=True):
                    params += [user, count]
                cursor.execute(
                    "INSERT INTO notify_user_sequence (user_id, last_id, purged_through) "  # noqa: S608 - placeholders only
                    f"VALUES {values} "
                    "ON CONFLICT (user_id) DO UPDATE SET last_id = last_id + excluded.last_id "
                    "RETURNING user_id, last_id",
                    params,
                )
            result.update(cursor.fetchall())
    return result


@transaction.atomic
def notifications_mark_read(
    *,
    user_id: str,
    ids: Sequence[int] | None = None,
    strict: bool = True,
    origin_channel: str | None = None,
) -> list[int]:
    """Mark the given ids (or, with ``ids=None``, every unread one) read.

    Returns the ids that changed from unread to read; the user's sockets other
    than ``origin_channel`` get a ``read`` frame with exactly those. With
    ``strict``, an id the user does not have raises NotificationNotFound and
    nothing changes.
    """
    unread = Notification.objects.filter(user_id=user_id, read_at__isnull=True)
    if ids is not None:
        wanted = sorted(set(ids))
        if strict and wanted:
            found = set(
                Notification.objects.filter(user_id=user_id, seq__in=wanted).values_list(
                    "seq", flat=True
                )
            )
            missing = [i for i in wanted if i not in found]
            if missing:
                raise NotificationNotFound(missing[0])
        unread = unread.filter(seq__in=wanted)
    changed = sorted(unread.select_for_update().values_list("seq", flat=True))
    if not changed:
        return []
    now = timezone.now()
    for start in range(0, len(changed), _INSERT_BATCH):
        Notification.objects.filter(
            user_id=user_id, seq__in=changed[start : start + _INSERT_BATCH]
        ).update(read_at=now)
    transaction.on_commit(
        lambda: delivery.push_read(user_id, changed, exclude_channel=origin_channel)
    )
    return changed


def notifications_purge(*, older_than_days: int, batch_size: int = 5000) -> int:
    """Delete notifications older than the retention, in small transactions.

    Each batch records, per user, the highest id it removed, so a client
    resuming from below it is told its replay is incomplete.
    """
    cutoff = timezone.now() - timedelta(days=older_than_days)
    total = 0
    while True:
        deleted = _purge_batch(cutoff=cutoff, batch_size=batch_size)
        total += deleted
        if deleted < batch_size:
            break
    IdempotencyRecord.objects.filter(created_at__lt=timezone.now() - IDEMPOTENCY_TTL).delete()
    return total


@transaction.atomic
def _purge_batch(*, cutoff: Any, batch_size: int) -> int:
    victims = list(
        Notification.objects.filter(created_at__lt=cutoff)
        .order_by("created_at")
        .values_list("pk", "user_id", "seq")[:batch_size]
    )
    if not victims:
        return 0
    highest: dict[str, int] = {}
    for _pk, user, seq in victims:
        highest[user] = max(seq, highest.get(user, 0))
    for user, seq in highest.items():
        UserSequence.objects.filter(user_id=user, purged_through__lt=seq).update(purged_through=seq)
    Notification.objects.filter(pk__in=[pk for pk, _u, _s in victims]).delete()
    return len(victims)
