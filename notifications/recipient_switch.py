"""PostgreSQL: the compact recipient table built beside a large live one,
so that migration 0006 only swaps names (``manage.py
notify_prepare_recipients``, run before the deploy's ``migrate``;
docs/migrations.md, "0006").

While the previous release keeps publishing and marking read:

1. ``prepare``: ``notify_recipient_new`` (the compact layout) with the old
   table's day partitions and the days ahead; then, under a ``SHARE ROW
   EXCLUSIVE`` lock on the old table (writes wait, at most ``LOCK_TIMEOUT``
   for the lock and then milliseconds), statement triggers that mirror
   every later insert, read mark and delete of the old table onto the new
   one in the writer's own transaction, and the mark ``through``: the old
   identity sequence's last value. The lock waits for every transaction
   writing the old table, so each row with an id up to the mark is final
   (committed or gone) and each later one is mirrored.
2. ``backfill``: the rows up to the mark, per old partition, in id ranges of
   ``batch``, each range its own transaction under a ``SHARE`` lock of that
   partition only (its writers, mostly mark-reads of that day, wait for
   one range; other days' go on). A mark-read is then either committed
   before the range is read (copied with the row) or made after the range
   commits (mirrored onto it). Progress is kept per partition in
   ``notify_recipient_switch``, so an interrupted run resumes.
3. ``swap`` (migration 0006, recipient_layout.convert): with the old
   release stopped, under an exclusive lock bounded by ``LOCK_TIMEOUT``,
   the triggers are dropped, the tables and their partitions renamed, and
   the old table dropped: catalog changes only.

Rows of a user without a counter row cannot be keyed; publishing always
creates it first, and the backfill gives one to any user lacking it.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from notifications import partitions
from notifications.recipient_layout import CREATE, TABLE

NEW = "notify_recipient_new"
PROGRESS = "notify_recipient_switch"
LOCK_TIMEOUT = "5s"
BATCH = 50_000
_FUNCTIONS = ("notify_switch_insert", "notify_switch_update", "notify_switch_delete")
_DAY = "(c.created_at AT TIME ZONE 'UTC')::date"

# Each mirrors one kind of statement's rows (its transition table ``c``).
_MIRROR = {
    "insert": (
        f"INSERT INTO {NEW} (user_key, day, seq, event_ref, read_at) "  # noqa: S608
        f"SELECT s.key, {_DAY}, c.seq, c.event_ref, c.read_at FROM c "
        "JOIN notify_user_sequence s ON s.user_id = c.user_id"
    ),
    "update": (
        f"UPDATE {NEW} n SET read_at = c.read_at FROM c "  # noqa: S608
        "JOIN notify_user_sequence s ON s.user_id = c.user_id "
        f"WHERE n.user_key = s.key AND n.seq = c.seq AND n.day = {_DAY} "
        "AND n.read_at IS DISTINCT FROM c.read_at"
    ),
    "delete": (
        f"DELETE FROM {NEW} n USING c JOIN notify_user_sequence s ON s.user_id = c.user_id "  # noqa: S608
        f"WHERE n.user_key = s.key AND n.seq = c.seq AND n.day = {_DAY}"
    ),
}
_COPY = (
    f"INSERT INTO {NEW} (user_key, day, seq, event_ref, read_at) "  # noqa: S608
    "SELECT s.key, (r.created_at AT TIME ZONE 'UTC')::date, r.seq, r.event_ref, r.read_at "
    "FROM {part} r JOIN notify_user_sequence s ON s.user_id = r.user_id "
    "WHERE r.id > %s AND r.id <= %s"
)
_COUNTERS = (
    "INSERT INTO notify_user_sequence (user_id, last_id, purged_through) "
    "SELECT user_id, max(seq), 0 FROM {part} WHERE id > %s AND id <= %s "
    "GROUP BY user_id ORDER BY user_id ON CONFLICT DO NOTHING"
)


def prepared(cursor: Any) -> bool:
    cursor.execute("SELECT to_regclass(%s)", [PROGRESS])
    return cursor.fetchone()[0] is not None


def prepare(connection: Any) -> int:
    """Step 1 (a re-run does nothing); returns the mark."""
    with connection.cursor() as cursor:
        if prepared(cursor):
            return _mark(cursor)
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        cursor.execute("SELECT to_regclass(%s)", [NEW])
        if cursor.fetchone()[0] is None:
            for statement in CREATE:
                cursor.execute(statement.format(t=NEW))
        days = {
            partitions.day_of(name.removeprefix(TABLE + "_"))
            for name in _children(cursor, TABLE)
            if not name.endswith("_default")
        }
        for day in sorted(days | set(_ahead())):
            cursor.execute("SELECT to_regclass(%s)", [partitions.partition_name(NEW, day)])
            if cursor.fetchone()[0] is None:
                partitions.create_partition(cursor, NEW, day)
        cursor.execute(f"LOCK TABLE {TABLE} IN SHARE ROW EXCLUSIVE MODE")
        for kind, sql in _MIRROR.items():
            _trigger(cursor, kind, sql)
        cursor.execute("SELECT last_value FROM notify_recipient_id_seq")
        mark = int(cursor.fetchone()[0])
        cursor.execute(
            "CREATE TABLE notify_recipient_switch (part text PRIMARY KEY, through bigint NOT NULL, "
            "upto bigint NULL)"
        )
        cursor.execute(
            "INSERT INTO notify_recipient_switch SELECT unnest(%s::text[]), 0, NULL "
            "UNION ALL SELECT '*', %s, %s",
            [_children(cursor, TABLE), mark, mark],
        )
    return mark


def _ahead() -> list[Any]:
    from datetime import UTC, datetime, timedelta

    today = datetime.now(UTC).date()
    return [today + timedelta(days=n) for n in range(partitions.DAYS_AHEAD + 1)]


def _trigger(cursor: Any, kind: str, sql: str) -> None:
    name = f"notify_switch_{kind}"
    cursor.execute(
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN {sql}; RETURN NULL; END $$"
    )
    table = "NEW" if kind != "delete" else "OLD"
    cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {TABLE}")
    cursor.execute(
        f"CREATE TRIGGER {name} AFTER {kind.upper()} ON {TABLE} "
        f"REFERENCING {table} TABLE AS c FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
    )


def backfill(connection: Any, *, batch: int = BATCH, progress: Any = None) -> int:
    """Step 2; returns the rows copied by this run."""
    copied = 0
    with connection.cursor() as cursor:
        mark = _mark(cursor)
        cursor.execute("SELECT part FROM notify_recipient_switch WHERE part <> '*' ORDER BY part")
        parts = [row[0] for row in cursor.fetchall()]
    for part in parts:
        through, upto = _range(connection, part, mark)
        while through < upto:
            end = min(upto, through + batch)
            copied += _copy_range(connection, part, through, end)
            through = end
            if progress is not None:
                progress(part, through, upto)
    return copied


def _range(connection: Any, part: str, mark: int) -> tuple[int, int]:
    """(copied through, last id to copy) of one old partition; the last id
    is found once (the rows up to the mark are final) and kept."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT through, upto FROM notify_recipient_switch WHERE part = %s", [part])
        through, upto = cursor.fetchone()
        if upto is None:
            cursor.execute("SELECT to_regclass(%s)", [part])
            found = cursor.fetchone()[0] is not None
            low, high = 0, 0
            if found:  # dropped meanwhile (the previous release's purge): nothing to copy
                cursor.execute(
                    f"SELECT coalesce(min(id), 1) - 1, coalesce(max(id), 0) FROM {part} "  # noqa: S608
                    "WHERE id <= %s",
                    [mark],
                )
                low, high = cursor.fetchone()
            through, upto = max(through, int(low)), int(high)
            cursor.execute(
                "UPDATE notify_recipient_switch SET through = %s, upto = %s WHERE part = %s",
                [through, upto, part],
            )
    return int(through), int(upto)


def _copy_range(connection: Any, part: str, after: int, end: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [part])
        found = cursor.fetchone()[0] is not None
    if found:
        # Before the partition's lock, in a transaction of its own:
        # publishing locks counters first, then the partition.
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute(_COUNTERS.format(part=part), [after, end])
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        cursor.execute("SELECT to_regclass(%s)", [part])
        copied = 0
        if cursor.fetchone()[0] is not None:
            cursor.execute(f"LOCK TABLE {part} IN SHARE MODE")
            cursor.execute(_COPY.format(part=part), [after, end])
            copied = int(cursor.rowcount)
        cursor.execute(
            "UPDATE notify_recipient_switch SET through = %s WHERE part = %s", [end, part]
        )
    return copied


def remaining(cursor: Any) -> list[str]:
    """The old partitions whose rows up to the mark are not all copied."""
    cursor.execute(
        "SELECT part FROM notify_recipient_switch WHERE part <> '*' "
        "AND (upto IS NULL OR through < upto) ORDER BY part"
    )
    return [row[0] for row in cursor.fetchall()]


def swap(cursor: Any) -> None:
    """Step 3, in the caller's transaction (which holds ``TABLE``'s lock):
    the triggers go, the new table takes the old one's names."""
    for name in _FUNCTIONS:
        cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {TABLE}")
        cursor.execute(f"DROP FUNCTION IF EXISTS {name}()")
    old = "notify_recipient_old"
    for name in _children(cursor, TABLE):
        cursor.execute(f"ALTER TABLE {name} RENAME TO {old}{name.removeprefix(TABLE)}")
    cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {old}")
    for name in _children(cursor, NEW):
        cursor.execute(f"ALTER TABLE {name} RENAME TO {TABLE}{name.removeprefix(NEW)}")
    cursor.execute(f"ALTER TABLE {NEW} RENAME TO {TABLE}")
    for index in ("key_seq_idx", "key_unread_idx"):
        cursor.execute(f"ALTER INDEX {NEW}_{index} RENAME TO {TABLE}_{index}")
    cursor.execute(f"DROP TABLE {old}")
    cursor.execute("DROP TABLE notify_recipient_switch")


def abandon(connection: Any) -> None:
    """Undo ``prepare``: the triggers, the new table and the progress go;
    the old table is left as it is."""
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        for name in _FUNCTIONS:
            cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {TABLE}")
            cursor.execute(f"DROP FUNCTION IF EXISTS {name}()")
        cursor.execute(f"DROP TABLE IF EXISTS {NEW}")
        cursor.execute("DROP TABLE IF EXISTS notify_recipient_switch")


def _mark(cursor: Any) -> int:
    cursor.execute("SELECT through FROM notify_recipient_switch WHERE part = '*'")
    return int(cursor.fetchone()[0])


def _children(cursor: Any, table: str) -> list[str]:
    cursor.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s ORDER BY 1",
        [table],
    )
    return [row[0] for row in cursor.fetchall()]
