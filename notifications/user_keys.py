"""The user key: a 4-byte integer per user (``notify_user_sequence.key``),
given once when the user's counter row is created and never changed.

It is what the compact recipient layout stores instead of the text user id
(docs/scaling.md, "Toward 100 bytes per row"). Publishing's counter upsert
returns it (notifications/pg_writes.py, notifications/publishing.py): a new
user's row takes the next key in the same statement, an existing user's
keeps its own.

``add_key_column`` is migration 0005 on PostgreSQL, written to run on a
large live table without a long exclusive lock, and to resume where an
interrupted run stopped (every step checks what is already done):

1. ``ADD COLUMN key integer`` (nullable, no default: a catalog change, no
   rewrite; ``lock_timeout`` bounds the wait for its brief exclusive lock);
2. a sequence, and the column's default from it (new rows from then on,
   including those of processes still on the old code during a deploy);
3. the existing rows, ``BACKFILL_BATCH`` users per committed transaction, in
   ``user_id`` order (the order publishing locks counters in, so the two
   cannot deadlock);
4. the unique index ``CONCURRENTLY`` (an invalid one left by an interrupted
   build is dropped first);
5. ``NOT NULL`` through a ``CHECK (key IS NOT NULL) NOT VALID`` validated
   under a lock that lets reads and writes go on, after which ``SET NOT
   NULL`` needs no scan; the ``CHECK`` is then dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import transaction

TABLE = "notify_user_sequence"
SEQUENCE = "notify_user_key_seq"
INDEX = "notify_user_sequence_key_uniq"
_CHECK = "notify_user_sequence_key_not_null"
BACKFILL_BATCH = 5000
LOCK_TIMEOUT = "5s"


def add_key_column(connection: Any, *, batch: int = BACKFILL_BATCH) -> int:
    """Migration 0005's steps on PostgreSQL (see the module's docstring), on
    a connection in autocommit (a non-atomic migration's). Returns the rows
    backfilled."""
    with _bounded(connection) as cursor:
        cursor.execute(f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS key integer")
        cursor.execute(f"CREATE SEQUENCE IF NOT EXISTS {SEQUENCE} AS integer OWNED BY {TABLE}.key")
        cursor.execute(f"ALTER TABLE {TABLE} ALTER COLUMN key SET DEFAULT nextval('{SEQUENCE}')")
    filled = backfill(connection, batch=batch)
    with connection.cursor() as cursor:
        _unique_index(cursor)
    _not_null(connection)
    return filled


@contextmanager
def _bounded(connection: Any) -> Iterator[Any]:
    """A transaction whose lock waits end after ``LOCK_TIMEOUT``. ``SET
    LOCAL``: no session state, which PgBouncer in transaction mode would
    leave on a server connection another client gets next."""
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        yield cursor


def backfill(connection: Any, *, batch: int = BACKFILL_BATCH) -> int:
    """Give every row without a key one, ``batch`` rows per transaction;
    returns how many. Rows are locked in ``user_id`` order and only for their
    batch's transaction, so a publish to one of them waits milliseconds."""
    filled, after = 0, ""  # every user id sorts at or after ""
    while True:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute(_BATCH, [after, batch])
            count, last = cursor.fetchone()
        if not count:  # a short batch is not the end: rows keyed meanwhile are skipped
            return filled
        filled += int(count)
        after = last


# One batch: the next ``limit`` users without a key from the last batch's
# last on (a range of the primary key: each batch starts where the previous
# ended, not from the table's start), locked in that order, then keyed
# through the primary key (``= ANY`` of the array: an index scan, not a join
# the planner could turn into a scan of the table per batch).
_BATCH = (
    "WITH todo AS MATERIALIZED (SELECT ARRAY("  # noqa: S608 - fixed names
    f"SELECT user_id FROM {TABLE} WHERE user_id >= %s AND key IS NULL "
    "ORDER BY user_id LIMIT %s FOR UPDATE) AS ids), "
    f"done AS (UPDATE {TABLE} s SET key = nextval('{SEQUENCE}') "
    "WHERE s.user_id = ANY((SELECT ids FROM todo)::text[]) AND s.key IS NULL) "
    "SELECT cardinality(ids), ids[cardinality(ids)] FROM todo"
)


def _unique_index(cursor: Any) -> None:
    cursor.execute(
        "SELECT x.indisvalid FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE i.relname = %s",
        [INDEX],
    )
    found = cursor.fetchone()
    if found is not None and found[0]:
        return
    if found is not None:  # an interrupted CONCURRENTLY build
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")
    cursor.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {INDEX} ON {TABLE} (key)")


def _not_null(connection: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.attnotnull FROM pg_attribute a WHERE a.attrelid = %s::regclass "
            "AND a.attname = 'key'",
            [TABLE],
        )
        if cursor.fetchone()[0]:
            return
        cursor.execute("SELECT 1 FROM pg_constraint WHERE conname = %s", [_CHECK])
        missing = cursor.fetchone() is None
    if missing:
        with _bounded(connection) as cursor:
            cursor.execute(
                f"ALTER TABLE {TABLE} ADD CONSTRAINT {_CHECK} CHECK (key IS NOT NULL) NOT VALID"
            )
    # Its own transaction: the scan holds SHARE UPDATE EXCLUSIVE only, so
    # reads and writes go on meanwhile.
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {TABLE} VALIDATE CONSTRAINT {_CHECK}")
    # The validated CHECK proves it: no scan under the exclusive lock.
    with _bounded(connection) as cursor:
        cursor.execute(f"ALTER TABLE {TABLE} ALTER COLUMN key SET NOT NULL")
        cursor.execute(f"ALTER TABLE {TABLE} DROP CONSTRAINT {_CHECK}")
