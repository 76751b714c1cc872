"""Copy notifications from the pre-0.x one-row-per-recipient table
(``notify_notification``, content on every row) into the event + recipient
tables, in batches (migration 0003 and ``manage.py notify_backfill``).

Each batch is a range of the legacy table's ids and its own transaction:
nothing holds a lock for long, and a batch re-run copies only what is
missing (``ON CONFLICT DO NOTHING``: the event's uuid and (user_id, seq)
are unique), so the copy can be repeated after old processes wrote more rows
(docs/migrations.md). Plain SQL on the given connection: a migration runs it
against the historical schema, not today's models.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

LEGACY_TABLE = "notify_notification"

_EVENTS = (
    "INSERT INTO notify_event (event_id, type, title, body, data, source, created_at) "
    "SELECT event_id, type, title, body, data, source, created_at FROM notify_notification "
    "WHERE id IN (SELECT MIN(id) FROM notify_notification WHERE id > %s AND id <= %s "
    "GROUP BY event_id) "
    "ON CONFLICT DO NOTHING"
)
_RECIPIENTS = (
    "INSERT INTO notify_recipient (user_id, seq, event_ref, created_at, read_at) "
    "SELECT n.user_id, n.seq, e.id, n.created_at, n.read_at "
    "FROM notify_notification n JOIN notify_event e ON e.event_id = n.event_id "
    "WHERE n.id > %s AND n.id <= %s "
    "ON CONFLICT DO NOTHING"
)


# Migration 0004 backwards: every recipient row back into the re-created
# legacy table, in id order (the old code's replay reads by (user_id, seq)).
_BACK = (
    "INSERT INTO notify_notification (user_id, seq, event_id, type, title, body, data, "
    "source, created_at, read_at) "
    "SELECT r.user_id, r.seq, e.event_id, e.type, e.title, e.body, e.data, e.source, "
    "r.created_at, r.read_at "
    "FROM notify_recipient r JOIN notify_event e ON e.id = r.event_ref "
    "ORDER BY r.id"
)


def legacy_table_exists(connection: BaseDatabaseWrapper) -> bool:
    with connection.cursor() as cursor:
        return LEGACY_TABLE in connection.introspection.table_names(cursor)


def resume_point(connection: BaseDatabaseWrapper, *, margin: int = 10_000) -> int:
    """Where a repeated copy can start: below the highest legacy id already
    copied, by ``margin`` ids (a row whose id was given before, but which
    committed after, a copied one is within the in-flight writes; the
    overlap is skipped by ``ON CONFLICT``). Scans down from the newest row,
    so it reads only the uncopied tail."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n.id FROM notify_notification n WHERE EXISTS (SELECT 1 FROM "
            "notify_recipient r WHERE r.user_id = n.user_id AND r.seq = n.seq) "
            "ORDER BY n.id DESC LIMIT 1"
        )
        found = cursor.fetchone()
    return max(0, found[0] - margin) if found else 0


def finish_copy(connection: BaseDatabaseWrapper) -> None:
    """The last catch-up before the legacy table is dropped (migration 0004):
    writes to it are blocked first (PostgreSQL; SQLite's write lock does the
    same), so no row can commit there after it is copied."""
    if not legacy_table_exists(connection):
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("LOCK TABLE notify_notification IN SHARE ROW EXCLUSIVE MODE")
    copy_legacy(connection, after_id=resume_point(connection))


def copy_legacy(
    connection: BaseDatabaseWrapper,
    *,
    after_id: int = 0,
    batch_size: int = 10_000,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Copy legacy rows with id above ``after_id``; returns the last id
    copied (resume from it). ``progress(last_id, max_id)`` after each batch."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT MAX(id) FROM notify_notification")
        (highest,) = cursor.fetchone() or (None,)
    last = after_id
    while highest is not None and last < highest:
        upper = min(last + batch_size, highest)
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute(_EVENTS, [last, upper])
            cursor.execute(_RECIPIENTS, [last, upper])
        last = upper
        if progress is not None:
            progress(last, highest)
    return last


def copy_back(connection: BaseDatabaseWrapper) -> int:
    """Migration 0004 backwards: the rows of the event and recipient tables
    into the empty legacy table the reverse just re-created, so that the
    previous release finds every notification (and a later 0004 copies
    nothing twice: ``ON CONFLICT`` skips them). Returns the rows copied."""
    with connection.cursor() as cursor:
        cursor.execute(_BACK)
        return int(cursor.rowcount)
