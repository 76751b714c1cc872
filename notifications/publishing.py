"""The publish transaction: requests in, rows and counters out, pushes after commit.

``notifications_publish_rated`` is what the group committer runs on its
writer thread for each group (services.notifications_publish_async): each
publisher's rate limit, then the writes of every request admitted. A plain
group on PostgreSQL (no idempotency key, no Web Push owed, up to
``pg_writes.COMBINED_MAX_ROWS`` rows) is one statement in autocommit
(``_publish_plain``); any other group is one transaction
(``notifications_publish_many``).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.db import connection, transaction
from django.utils import timezone

from notifications import delivery, idempotency
from notifications.admission import Admission
from notifications.errors import IdempotencyConflict, RateLimited
from notifications.models import allocate_ids, insert_notifications
from notifications.push import services as push_services
from notifications.ratelimit import publisher_limiter
from notifications.rendering import NotificationDict, wire_fields, with_id


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
    push: str = "auto"  # Web Push: auto | always | never (notifications/push/)


def request_hash(data: dict[str, Any]) -> str:
    """What makes two publish requests "the same body" for idempotency."""
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


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
    accepted = _claim_all(publications, outcomes, now)
    wanted, planned = _plan(accepted, now)
    for index, _publication, users, event_id in accepted:
        outcomes[index] = PublishResult(event_id=event_id, recipients=len(users))
    last_ids = _store(wanted, [(stored, backs) for _shared, stored, backs in planned])
    stored = _stored_rows(accepted, planned, last_ids)
    push_services.record_owed(stored, committed_at=now)  # same transaction: durable debt
    pushes = [(user, notification) for user, notification, _mode in stored]
    if pushes:
        transaction.on_commit(lambda: delivery.push_notifications(pushes, committed_at=time.time()))
    return [outcome for outcome in outcomes if outcome is not None]


def _is_plain(publications: Sequence[Publication]) -> bool:
    """Whether the group's writes are pg_writes' one statement and nothing
    else: PostgreSQL, no idempotency key to claim, no Web Push to owe, at
    most ``COMBINED_MAX_ROWS`` rows, and no transaction of the caller's open
    (its commit, not this statement's, would make the rows durable)."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return False
    if any(publication.idempotency_key is not None for publication in publications):
        return False
    if push_services.may_owe(publication.push for publication in publications):
        return False
    from notifications import pg_writes  # psycopg: PostgreSQL deployments only

    rows = sum(len(set(publication.recipients)) for publication in publications)
    return rows <= pg_writes.COMBINED_MAX_ROWS


def _publish_plain(publications: Sequence[Publication]) -> list[PublishResult]:
    """A plain group (``_is_plain``): its counters, events and rows in one
    statement in autocommit, one round trip where ``BEGIN``, the statement
    and ``COMMIT`` took three. A single statement is atomic by itself in
    PostgreSQL (all of its data-modifying CTEs or none), and with
    ``synchronous_commit`` on (PostgreSQL's default; docs/architecture.md,
    "Publishing") its implicit commit is flushed to the WAL before the
    server answers it: the rows are durable before the pushes start and
    before any 202, as with the transaction. A failure stores nothing, and
    the group committer retries each request alone."""
    from notifications import pg_writes  # psycopg: PostgreSQL deployments only

    group = PlainGroup(publications)
    return group.committed(pg_writes.allocate_and_insert(group.users, group.counts, group.rows))


class PlainGroup:
    """A plain group's writes planned (``rows``, each user's row ``counts``),
    and after its one statement (``committed``) its pushes and results."""

    def __init__(self, publications: Sequence[Publication]) -> None:
        self._accepted = [
            (index, publication, list(dict.fromkeys(publication.recipients)), uuid.uuid4())
            for index, publication in enumerate(publications)
        ]
        wanted, self._planned = _plan(self._accepted, timezone.now())
        self.users = sorted(wanted)
        self.counts = [wanted[user] for user in self.users]
        self.rows = [(stored, backs) for _shared, stored, backs in self._planned]

    def committed(self, last_ids: Sequence[tuple[str, int]]) -> list[PublishResult]:
        """Pushes started (the statement committed: what on_commit does after
        a transaction), and each publication's result."""
        rows = _stored_rows(self._accepted, self._planned, dict(last_ids))
        if rows:
            pushes = [(user, notification) for user, notification, _mode in rows]
            delivery.push_notifications(pushes, committed_at=time.time())
        return [
            PublishResult(event_id=event_id, recipients=len(users))
            for _index, _publication, users, event_id in self._accepted
        ]


_Accepted = tuple[int, Publication, list[str], uuid.UUID]
# Per publication: its wire fields, its event row, and its rows as (user,
# rows of that user after it in the group).
_Planned = tuple[NotificationDict, dict[str, Any], list[tuple[str, int]]]


def _stored_rows(
    accepted: list[_Accepted], planned: list[_Planned], last_ids: dict[str, int]
) -> list[tuple[str, NotificationDict, str]]:
    """Each stored row as (user, its notification with its id, its Web Push
    mode), in the group's order."""
    return [
        (user, with_id(last_ids[user] - back, shared), publication.push)
        for (_index, publication, _users, _event), (shared, _stored, backs) in zip(
            accepted, planned, strict=True
        )
        for user, back in backs
    ]


def _claim_all(
    publications: Sequence[Publication],
    outcomes: list[PublishResult | IdempotencyConflict | None],
    now: Any,
) -> list[_Accepted]:
    """Claim the idempotency keys in one global order; the publications to
    store, in arrival order (the others get their outcome in ``outcomes``)."""
    accepted: list[_Accepted] = []
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
                earlier = idempotency.claim(
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
                outcomes[index] = PublishResult(
                    event_id=earlier[0], recipients=earlier[1], replayed=True
                )
                continue
        accepted.append((index, publication, users, event_id))
    accepted.sort(key=lambda item: item[0])  # ids follow arrival order
    return accepted


def _plan(accepted: list[_Accepted], now: Any) -> tuple[Counter[str], list[_Planned]]:
    """Rows per user, and each publication's content and rows, before any id is known."""
    wanted = Counter(user for _i, _p, users, _e in accepted for user in users)
    after = dict(wanted)  # per user: rows of that user still to come in the group
    planned: list[_Planned] = []
    for _index, publication, users, event_id in accepted:
        shared = wire_fields(
            type=publication.type,
            title=publication.title,
            body=publication.body,
            data=publication.data,
            source=publication.source,
            created_at=now,
            read_at=None,
        )
        backs: list[tuple[str, int]] = []
        for user in users:
            after[user] -= 1
            backs.append((user, after[user]))
        planned.append((shared, {**shared, "event_id": event_id, "created_at": now}, backs))
    return wanted, planned


PublishOutcome = PublishResult | IdempotencyConflict | RateLimited


def notifications_publish_rated(*, publications: Sequence[Publication]) -> list[PublishOutcome]:
    """Each publisher's rate limits (one call per publisher for the whole
    group: a request and its recipients each, in order), then the writes of
    those admitted: one statement for a plain group, else one transaction."""
    admission = Admission(publications)
    for source, sizes in admission.calls():
        admission.answer(source, *publisher_limiter.admit(source, sizes))
    group = admission.group()
    if group:
        if _is_plain(group):
            admission.stored(_publish_plain(group))
        else:
            admission.stored(notifications_publish_many(publications=group))
    return admission.outcomes()


def _store(
    wanted: Counter[str], publications: list[tuple[dict[str, Any], list[tuple[str, int]]]]
) -> dict[str, int]:
    """The counters and rows of a group; user -> new last id. Each row comes
    as (user, rows of that user after it in the group): its seq is the new
    last id less that. PostgreSQL writes a group of up to
    ``pg_writes.COMBINED_MAX_ROWS`` rows in one statement, a larger one in
    three (its rows by ``COPY``)."""
    if connection.vendor == "postgresql":
        from notifications import pg_writes  # psycopg: PostgreSQL deployments only

        ordered = sorted(wanted)
        counts = [wanted[user] for user in ordered]
        if sum(counts) <= pg_writes.COMBINED_MAX_ROWS:
            return dict(pg_writes.allocate_and_insert(ordered, counts, publications))
        return dict(pg_writes.allocate_and_copy(ordered, counts, publications))
    last_ids = allocate_ids(wanted)
    insert_notifications(
        [
            (stored, [(user, last_ids[user] - back) for user, back in backs])
            for stored, backs in publications
        ]
    )
    return last_ids
