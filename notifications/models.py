"""Storage: one event row per publish (its content), one small row per
(recipient, notification), and a counter per user.

``UserSequence`` is the per-user id allocator. Publishing increments it inside
the publishing transaction, which row-locks it until commit: commits for one
user are therefore serialized, and a user's ids increase in commit order with
no holes (a rolled-back publish rolls its increment back too). A consumer that
sees id N live knows every id below N is already committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connection, models
from django.db.models import Q


class UserSequence(models.Model):
    user_id = models.CharField(max_length=128, primary_key=True)
    last_id = models.BigIntegerField(default=0)
    # Highest id the retention purge removed: a resume from below it is incomplete.
    purged_through = models.BigIntegerField(default=0)
    # PostgreSQL also has ``key integer NOT NULL UNIQUE`` (migration 0005,
    # notifications/user_keys.py): not declared here, so the ORM never writes
    # it; publishing's upsert and the column's default give it.

    class Meta:
        db_table = "notify_user_sequence"

    def __str__(self) -> str:
        return f"{self.user_id}@{self.last_id}"


class NotificationEvent(models.Model):
    """What one publish says, stored once for all its recipients."""

    event_id = models.UUIDField(default=uuid.uuid4, unique=True)  # the public event id
    type = models.CharField(max_length=100)
    title = models.CharField(max_length=200, blank=True, default="")
    body = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict)
    source = models.CharField(max_length=100)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "notify_event"
        indexes = [models.Index(fields=["created_at"], name="notify_event_created_idx")]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type}"


class EventContent:
    """The content of a recipient row's event, read through it (selectors
    and the admin join it in the row's query)."""

    event: NotificationEvent

    @property
    def type(self) -> str:
        return self.event.type

    @property
    def title(self) -> str:
        return self.event.title

    @property
    def body(self) -> str:
        return self.event.body

    @property
    def data(self) -> Any:
        return self.event.data

    @property
    def source(self) -> str:
        return self.event.source


class Notification(EventContent, models.Model):
    """One recipient's notification: its id (``seq``), read state, and a
    reference to the shared content. Kept small: it is the row that grows
    with recipients (docs/scaling.md).

    SQLite's table. On PostgreSQL, migration 0006 replaces it with the
    compact layout (notifications/recipient_layout.py), which this model
    does not describe: every PostgreSQL read and write of recipient rows is
    SQL of its own (pg_writes, wire_sql, recipients_pg, openings)."""

    user_id = models.CharField(max_length=128)
    seq = models.BigIntegerField()  # the public id, per user
    event = models.ForeignKey(
        NotificationEvent,
        on_delete=models.DO_NOTHING,  # the purge deletes recipients first, then events
        db_column="event_ref",
        # No index, no constraint: each would cost every recipient row (or a
        # lookup per purged event); the purge keeps references valid.
        db_index=False,
        db_constraint=False,
        related_name="recipients",
    )
    # The event's created_at, copied: the purge's (and a time partition's) key.
    created_at = models.DateTimeField()
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "notify_recipient"
        constraints = [
            models.UniqueConstraint(fields=["user_id", "seq"], name="notify_recipient_seq_uniq"),
        ]
        indexes = [
            models.Index(
                fields=["user_id", "seq"],
                condition=Q(read_at__isnull=True),
                name="notify_recipient_unread_idx",
            ),
            models.Index(fields=["created_at"], name="notify_recipient_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}#{self.seq}"


class NotificationRow(EventContent, models.Model):
    """A recipient's notification as the admin reads it: a view over the
    recipient table (migration 0006) with the user id and an object id of
    ``user_id:seq``. On PostgreSQL the table has no id and no user id (the
    compact layout, notifications/recipient_layout.py), and the admin
    refuses composite primary keys (Django 5.2); the view gives it both."""

    id = models.CharField(max_length=160, primary_key=True)  # user_id:seq
    user_id = models.CharField(max_length=128)
    seq = models.BigIntegerField()
    event = models.ForeignKey(
        NotificationEvent,
        on_delete=models.DO_NOTHING,
        db_column="event_ref",
        db_constraint=False,
        related_name="+",
    )
    day = models.DateField()  # the UTC day of created_at: what retention goes by
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = "notify_recipient_view"
        verbose_name = "notification"

    def __str__(self) -> str:
        return f"{self.user_id}#{self.seq}"


class IdempotencyRecord(models.Model):
    """The first answer to (publisher, Idempotency-Key), kept 24 h.

    Written in the publishing transaction, so the record exists exactly when
    the notifications do; its unique key makes concurrent duplicates wait for
    the first and then replay its answer, in any process.
    """

    source = models.CharField(max_length=100)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    event_id = models.UUIDField()
    recipients = models.IntegerField()
    created_at = models.DateTimeField()

    class Meta:
        db_table = "notify_idempotency"
        constraints = [
            models.UniqueConstraint(fields=["source", "key"], name="notify_idem_uniq"),
        ]
        indexes = [models.Index(fields=["created_at"], name="notify_idem_created_idx")]

    def __str__(self) -> str:
        return f"{self.source}:{self.key}"


_ROW_COLUMNS = ("user_id", "seq", "event", "created_at")
_EVENT_COLUMNS = ("event_id", "type", "title", "body", "data", "source", "created_at")
_INSERT_CHUNK = 1000


def insert_notifications(
    publications: Sequence[tuple[Mapping[str, Any], Sequence[tuple[str, int]]]],
) -> None:
    """Insert, per publication, one event row with the values its recipients
    share, and one small row per recipient's (user_id, seq).

    SQLite's path: PostgreSQL writes through notifications/pg_writes.py,
    where the rows carry the user key. Events go through ``bulk_create``
    (one statement, ids returned) and recipient rows through ``executemany``
    (sqlite3 loops in C): ``bulk_create``'s SQL compiler was a quarter of the
    writer's time at 100 recipients per publish (docs/performance.md).
    """
    if not publications:
        return
    events = NotificationEvent.objects.bulk_create(
        NotificationEvent(**{name: shared[name] for name in _EVENT_COLUMNS})
        for shared, _rows in publications
    )
    params: list[tuple[Any, ...]] = []
    for event, (_shared, rows) in zip(events, publications, strict=True):
        created = _field("created_at").get_db_prep_save(event.created_at, connection)
        params.extend((user_id, seq, event.pk, created) for user_id, seq in rows)
    columns = [_field(name).column for name in _ROW_COLUMNS]
    quote = connection.ops.quote_name
    # Only model metadata and fixed placeholders go into the text; values are
    # parameters.
    sql = (
        f"INSERT INTO {quote(Notification._meta.db_table)} "  # noqa: S608
        f"({', '.join(quote(column) for column in columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )
    with connection.cursor() as cursor:
        for start in range(0, len(params), _INSERT_CHUNK):
            cursor.executemany(sql, params[start : start + _INSERT_CHUNK])


def _field(name: str) -> models.Field[Any, Any]:
    field = Notification._meta.get_field(name)
    assert isinstance(field, models.Field)
    return field


# Counters per statement on SQLite's path (its parameter limit).
_SEQ_CHUNK = 500


def allocate_ids(wanted: Mapping[str, int]) -> dict[str, int]:
    """Add each user's count to their counter in this transaction; user -> new last id.

    Rows are locked in sorted order, so concurrent multi-recipient publishes
    cannot deadlock on each other's counters. SQLite's path, in chunks of
    ``VALUES`` (its parameter limit); PostgreSQL's is pg_writes'.
    """
    ordered = sorted(wanted)
    if not ordered:
        return {}
    result: dict[str, int] = {}
    with connection.cursor() as cursor:
        for start in range(0, len(ordered), _SEQ_CHUNK):
            chunk = ordered[start : start + _SEQ_CHUNK]
            values = ", ".join(["(%s, %s, 0)"] * len(chunk))
            params: list[Any] = []
            for user in chunk:
                params += [user, wanted[user]]
            cursor.execute(
                "INSERT INTO notify_user_sequence (user_id, last_id, purged_through) "  # noqa: S608 - placeholders only
                f"VALUES {values} "
                "ON CONFLICT (user_id) DO UPDATE SET last_id = last_id + excluded.last_id "
                "RETURNING user_id, last_id",
                params,
            )
            result.update(cursor.fetchall())
    return result
