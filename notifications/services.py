"""Writes. Every change to stored notifications goes through here.

Each service is one transaction; pushes are scheduled with
``transaction.on_commit`` so nothing is announced that could still roll back.
(A plain publish group on PostgreSQL is one statement in autocommit, which
commits by itself; its pushes start when it returns: publishing._publish_plain.)

Publishing: requests wait on the event loop and one writer thread commits
whatever is queued at that moment, with each publisher's rate limit
(notifications/group_commit.py, notifications/publishing.py). On PostgreSQL
a plain publication from an event loop (the HTTP API, the demo page) commits
instead in a group on that loop's own connection
(notifications/publish_loop.py); the synchronous ``notifications_publish``
always takes the writer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from asgiref.sync import async_to_sync
from django.db import connection, transaction
from django.utils import timezone

from notifications import delivery, partitions, publish_loop, recipients_pg
from notifications.db import with_kept_connection
from notifications.errors import NotificationNotFound
from notifications.group_commit import AsyncGroupCommitter
from notifications.idempotency import IDEMPOTENCY_TTL
from notifications.models import IdempotencyRecord, Notification, NotificationEvent, UserSequence
from notifications.publishing import (
    Publication,
    PublishOutcome,
    PublishResult,
    notifications_publish_rated,
)

_INSERT_BATCH = 1000

# Requests on the event loop, commits on one writer thread that keeps its
# connection between groups (notifications/group_commit.py, notifications/db.py).
_writer: AsyncGroupCommitter[Publication, PublishOutcome] = AsyncGroupCommitter(
    with_kept_connection(lambda group: notifications_publish_rated(publications=group)),
    executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="publish-writer"),
    size_of=lambda publication: max(1, len(publication.recipients)),
    key_of=lambda publication: publication.source,
)


async def notifications_publish_async(*, publication: Publication) -> PublishResult:
    """Publish from the event loop: rate limit, commit (shared with whatever
    else is waiting), push after commit. Raises RateLimited, IdempotencyConflict
    or a database error. On PostgreSQL a plain publication commits in a group
    on this loop's own connection (notifications/publish_loop.py); any other
    takes the writer thread."""
    if not publish_loop.eligible(publication):
        return await _through_writer(publication)
    delivery.bind_loop(asyncio.get_running_loop())
    return _result(await publish_loop.submit(publication))


async def _through_writer(publication: Publication) -> PublishResult:
    delivery.bind_loop(asyncio.get_running_loop())
    return _result(await _writer.submit(publication))


def _result(outcome: PublishOutcome) -> PublishResult:
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


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
    push: str = "auto",
) -> PublishResult:
    """``notifications_publish_async`` for synchronous callers (tools, tests):
    the same rate limit and commit, always by the writer thread, which keeps
    its connection (the loop ``async_to_sync`` runs lasts one call: a
    connection of its own would be opened and dropped per call). Not from a
    thread that runs an event loop (await ``notifications_publish_async``
    there)."""
    publication = Publication(
        source=source,
        recipients=recipients,
        type=type,
        title=title,
        body=body,
        data=data if data is not None else {},
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        push=push,
    )
    result: PublishResult = async_to_sync(_through_writer)(publication)
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
    wanted = None if ids is None else sorted(set(ids))
    if strict and wanted:
        found = _existing(user_id, wanted)
        missing = [i for i in wanted if i not in found]
        if missing:
            raise NotificationNotFound(missing[0])
    changed = _mark_read(user_id, wanted, timezone.now())
    if not changed:
        return []
    transaction.on_commit(
        lambda: delivery.push_read(user_id, changed, exclude_channel=origin_channel)
    )
    return changed


def _existing(user_id: str, wanted: list[int]) -> set[int]:
    if connection.vendor == "postgresql":
        return recipients_pg.existing(user_id, wanted)
    rows = Notification.objects.filter(user_id=user_id, seq__in=wanted)
    return set(rows.values_list("seq", flat=True))


def _mark_read(user_id: str, wanted: list[int] | None, now: Any) -> list[int]:
    """The user's unread rows of ``wanted`` (None: all) marked read; the ids
    that changed, sorted. PostgreSQL: one UPDATE through the user key."""
    if connection.vendor == "postgresql":
        return recipients_pg.mark_read(user_id, wanted, now)
    unread = Notification.objects.filter(user_id=user_id, read_at__isnull=True)
    if wanted is not None:
        unread = unread.filter(seq__in=wanted)
    changed = sorted(unread.select_for_update().values_list("seq", flat=True))
    for start in range(0, len(changed), _INSERT_BATCH):
        Notification.objects.filter(
            user_id=user_id, seq__in=changed[start : start + _INSERT_BATCH]
        ).update(read_at=now)
    return changed


def notifications_purge(*, older_than_days: int, batch_size: int = 5000) -> int:
    """Delete notifications older than the retention.

    On PostgreSQL whole days go (notifications/partitions.py): the cutoff is
    rounded down to a UTC midnight, the partitions before it are dropped, and
    the days ahead are created. Rows no day partition held (the default
    partition), and on SQLite every row, are deleted in small transactions.
    Either way, each user's highest removed id is recorded first, so a client
    resuming from below it is told its replay is incomplete.
    """
    cutoff = timezone.now() - timedelta(days=older_than_days)
    total = 0
    if connection.vendor == "postgresql":
        partitions.ensure_partitions()
        day = cutoff.astimezone(UTC).date()
        cutoff = datetime(day.year, day.month, day.day, tzinfo=UTC)
        total += partitions.drop_expired(before=day)
    while True:
        if connection.vendor == "postgresql":
            with transaction.atomic():
                deleted = recipients_pg.purge_batch(before=day, batch_size=batch_size)
        else:
            deleted = _purge_batch(cutoff=cutoff, batch_size=batch_size)
        total += deleted
        if deleted < batch_size:
            break
    _purge_events(cutoff=cutoff, batch_size=batch_size)
    IdempotencyRecord.objects.filter(created_at__lt=timezone.now() - IDEMPOTENCY_TTL).delete()
    return total


def notifications_compact() -> list[str]:
    """PostgreSQL: rebuild the recipient indexes of each closed day once
    (partitions.compact_closed; the purge command runs it after the purge).
    Returns the partitions rebuilt; elsewhere nothing to do."""
    if connection.vendor != "postgresql":
        return []
    return partitions.compact_closed()


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


def _purge_events(*, cutoff: Any, batch_size: int) -> None:
    """The events of the purged rows: a recipient row carries its event's
    created_at, so once the rows older than the cutoff are gone, so is every
    reference to an event older than it."""
    while True:
        with transaction.atomic():
            victims = list(
                NotificationEvent.objects.filter(created_at__lt=cutoff)
                .order_by("created_at")
                .values_list("pk", flat=True)[:batch_size]
            )
            NotificationEvent.objects.filter(pk__in=victims).delete()
        if len(victims) < batch_size:
            return
