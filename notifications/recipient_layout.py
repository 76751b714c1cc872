"""PostgreSQL: the compact recipient table (migration 0006).

One row per (recipient, notification) in 48 bytes of heap unread, 56 read,
and a 28-byte index entry (docs/scaling.md, "Toward 100 bytes per row"):

* ``user_key``: the user's 4-byte key (``notify_user_sequence.key``,
  notifications/user_keys.py) instead of the text user id;
* ``day``: the UTC day of the event's ``created_at``, the partition key, a
  4-byte ``date`` that pairs with the key (no alignment padding); the wire's
  ``created_at`` is the event's, so the row need not carry its own;
* no ``id`` and no unique index: a unique index of a partitioned table would
  have to carry ``day`` (36 bytes an entry, not 28), and uniqueness of
  ``(user, seq)`` is the row-locked counter's (models.UserSequence);
* ``(user_key, seq)`` for a user's rows in id order, and the same over the
  unread rows only.

``convert`` is migration 0006 on PostgreSQL. Where ``manage.py
notify_prepare_recipients`` has built the new table beside a live one
(notifications/recipient_switch.py), it swaps the names, a catalog change;
otherwise it copies every row in one transaction, holding the old table's
lock for the copy's duration, which suits a new install or a small table
(docs/migrations.md, "0006").
SQLite keeps the simple table, whose rows carry the user id.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from notifications import partitions

TABLE = "notify_recipient"
_OLD = "notify_recipient_old"
_NEW = "notify_recipient_new"

# ``{t}``: the table's name (the new one is built beside the old under
# another name, then renamed).
CREATE = (
    "CREATE TABLE {t} (user_key integer NOT NULL, day date NOT NULL, seq bigint NOT NULL,"
    " event_ref bigint NOT NULL, read_at timestamptz NULL) PARTITION BY RANGE (day)",
    "CREATE INDEX {t}_key_seq_idx ON {t} (user_key, seq)",
    "CREATE INDEX {t}_key_unread_idx ON {t} (user_key, seq) WHERE read_at IS NULL",
    "CREATE TABLE {t}_default PARTITION OF {t} DEFAULT",
)

# The old layout, for 0006 backwards.
_CREATE_OLD = partitions.RECIPIENT_DDL_0002

# Every recipient's user has a counter row (publishing creates it); one
# written otherwise gets one here, keyed by the column's default.
_COUNTERS = (
    "INSERT INTO notify_user_sequence (user_id, last_id, purged_through) "  # noqa: S608
    f"SELECT user_id, max(seq), 0 FROM {_OLD} GROUP BY user_id ON CONFLICT DO NOTHING"
)
_COPY = (
    f"INSERT INTO {TABLE} (user_key, day, seq, event_ref, read_at) "  # noqa: S608
    "SELECT s.key, (r.created_at AT TIME ZONE 'UTC')::date, r.seq, r.event_ref, r.read_at "
    f"FROM {_OLD} r JOIN notify_user_sequence s ON s.user_id = r.user_id"
)
_COPY_BACK = (
    f"INSERT INTO {TABLE} (user_id, seq, event_ref, created_at, read_at) "  # noqa: S608
    "SELECT s.user_id, r.seq, r.event_ref, e.created_at, r.read_at "
    f"FROM {_NEW} r JOIN notify_user_sequence s ON s.key = r.user_key "
    "JOIN notify_event e ON e.id = r.event_ref"
)


def is_compact(cursor: Any) -> bool:
    """Whether ``notify_recipient`` has the compact layout already."""
    cursor.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_name = %s AND column_name = %s",
        [TABLE, "user_key"],
    )
    return cursor.fetchone() is not None


def convert(connection: Any) -> int:
    """Migration 0006 forwards; returns the rows copied (0 when the table
    has the new layout already, so a re-run does nothing)."""
    from notifications import recipient_switch  # it builds on this module

    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        if is_compact(cursor):
            return 0
        if recipient_switch.prepared(cursor):
            return _swap(cursor, recipient_switch)
        cursor.execute(f"LOCK TABLE {TABLE} IN SHARE MODE")  # writes wait; reads go on
        _rename(cursor, TABLE, _OLD)
        for statement in CREATE:
            cursor.execute(statement.format(t=TABLE))
        days = _days(cursor, _OLD)
        cursor.execute(_COUNTERS)
        _add_days(cursor, days)
        cursor.execute(_COPY)
        copied = int(cursor.rowcount)
        cursor.execute(f"DROP TABLE {_OLD}")
    return copied


def _swap(cursor: Any, switch: Any) -> int:
    left = switch.remaining(cursor)
    if left:
        raise RuntimeError(
            f"the compact recipient table is not filled yet ({len(left)} old partitions "
            "left, first "
            f"{left[0]}): run `python manage.py notify_prepare_recipients` to the end first"
        )
    cursor.execute(f"SET LOCAL lock_timeout = '{switch.LOCK_TIMEOUT}'")
    cursor.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
    switch.swap(cursor)
    return 0


def revert(connection: Any) -> None:
    """Migration 0006 backwards: the old layout, every row copied back."""
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        if not is_compact(cursor):
            return
        cursor.execute(f"LOCK TABLE {TABLE} IN SHARE MODE")
        _rename(cursor, TABLE, _NEW)
        for statement in _CREATE_OLD:
            cursor.execute(statement)
        _add_days(cursor, _days(cursor, _NEW))
        cursor.execute(_COPY_BACK)
        cursor.execute(f"DROP TABLE {_NEW}")


def _rename(cursor: Any, table: str, to: str) -> None:
    """Rename a partitioned table and its partitions (their names carry the
    table's, and the new table's partitions take the old names)."""
    for name in _children(cursor, table):
        cursor.execute(f"ALTER TABLE {name} RENAME TO {to}{name.removeprefix(table)}")
    cursor.execute(f"ALTER TABLE {table} RENAME TO {to}")


def _children(cursor: Any, table: str) -> list[str]:
    cursor.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s ORDER BY 1",
        [table],
    )
    return [row[0] for row in cursor.fetchall()]


def _days(cursor: Any, table: str) -> list[str]:
    """The day suffixes (``pYYYYMMDD``) of ``table``'s day partitions."""
    return [
        name.removeprefix(table + "_")
        for name in _children(cursor, table)
        if not name.endswith("_default")
    ]


def _add_days(cursor: Any, suffixes: list[str]) -> None:
    """The same day partitions on the new ``notify_recipient``, so the
    copied rows land in their days rather than in the default partition."""
    for suffix in suffixes:
        day = partitions.day_of(suffix)
        partitions.create_partition(cursor, TABLE, day)
