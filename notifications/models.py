"""Storage: one row per (recipient, notification), and a counter per user.

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

import orjson
from django.db import connection, models
from django.db.models import Q


class UserSequence(models.Model):
    user_id = models.CharField(max_length=128, primary_key=True)
    last_id = models.BigIntegerField(default=0)
    # Highest id the retention purge removed: a resume from below it is incomplete.
    purged_through = models.BigIntegerField(default=0)

    class Meta:
        db_table = "notify_user_sequence"

    def __str__(self) -> str:
        return f"{self.user_id}@{self.last_id}"


class Notification(models.Model):
    user_id = models.CharField(max_length=128)
    seq = models.BigIntegerField()  # the public id, per user
    event_id = models.UUIDField(default=uuid.uuid4)
    type = models.CharField(max_length=100)
    title = models.CharField(max_length=200, blank=True, default="")
    body = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict)
    source = models.CharField(max_length=100)
    created_at = models.DateTimeField()
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "notify_notification"
        constraints = [
            models.UniqueConstraint(fields=["user_id", "seq"], name="notify_user_seq_uniq"),
        ]
        indexes = [
            models.Index(
                fields=["user_id", "seq"],
                condition=Q(read_at__isnull=True),
                name="notify_unread_idx",
            ),
            models.Index(fields=["created_at"], name="notify_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}#{self.seq} {self.type}"


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


_ROW_COLUMNS = ("user_id", "seq")
_SHARED_COLUMNS = ("event_id", "type", "title", "body", "data", "source", "created_at")
_INSERT_CHUNK = 1000


def insert_notifications(
    publications: Sequence[tuple[Mapping[str, Any], Sequence[tuple[str, int]]]],
) -> None:
    """Insert rows given per publication: the values its rows share, and each
    row's (user_id, seq).

    Shared values are adapted for the database once per publication, not per
    row, and the rows go out through ``executemany`` (psycopg pipelines it;
    sqlite3 loops in C). ``bulk_create``'s SQL compiler was a quarter of the
    writer's time at 100 recipients per publish (docs/performance.md).
    """
    meta = Notification._meta
    quote = connection.ops.quote_name
    columns = (*_ROW_COLUMNS, *_SHARED_COLUMNS)
    placeholders = ["%s"] * len(columns)
    if connection.vendor == "postgresql":
        placeholders[columns.index("data")] = "%s::jsonb"
    # Only model metadata and fixed placeholders go into the text; values are
    # parameters.
    sql = (
        f"INSERT INTO {quote(meta.db_table)} "  # noqa: S608
        f"({', '.join(quote(_field(name).column) for name in columns)}) "
        f"VALUES ({', '.join(placeholders)})"
    )
    params: list[tuple[Any, ...]] = []
    for shared, rows in publications:
        prepared = tuple(_prepare(name, shared[name]) for name in _SHARED_COLUMNS)
        params.extend((user_id, seq, *prepared) for user_id, seq in rows)
    if connection.vendor == "postgresql" and len(params) > 1:
        _copy_rows(columns, params)
        return
    with connection.cursor() as cursor:
        for start in range(0, len(params), _INSERT_CHUNK):
            cursor.executemany(sql, params[start : start + _INSERT_CHUNK])


def _copy_rows(columns: Sequence[str], params: list[tuple[Any, ...]]) -> None:
    """PostgreSQL: COPY, which the server ingests faster than INSERTs (jsonb
    is parsed from COPY's text form; psycopg adapts the other values)."""
    quote = connection.ops.quote_name
    statement = (
        f"COPY {quote(Notification._meta.db_table)} "
        f"({', '.join(quote(_field(name).column) for name in columns)}) FROM STDIN"
    )
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.cursor.copy(statement) as copy,
    ):
        for row in params:
            copy.write_row(row)


def _prepare(name: str, value: Any) -> Any:
    if name == "data" and connection.vendor == "postgresql":
        return orjson.dumps(value).decode()  # cast to jsonb in the statement
    return _field(name).get_db_prep_save(value, connection)


def _field(name: str) -> models.Field[Any, Any]:
    field = Notification._meta.get_field(name)
    assert isinstance(field, models.Field)
    return field
