"""PostgreSQL: a user's recipient rows through the user key.

The compact table (notifications/recipient_layout.py) has no user id: a
user's rows are ``user_key = (SELECT key FROM notify_user_sequence WHERE
user_id = %s)``, one probe of the counter's primary key, then the
``(user_key, seq)`` indexes. A user without a counter row has no key and so
no rows. Plain SQL each: the ``Notification`` model describes SQLite's table.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from django.db import connection, transaction

_KEY = "(SELECT key FROM notify_user_sequence WHERE user_id = %s)"

UNREAD_COUNT = f"SELECT count(*) FROM notify_recipient WHERE user_key = {_KEY} AND read_at IS NULL"  # noqa: S608
# sequence_state and unread_count in one round trip (selectors._opening).
OPENING = (
    "SELECT s.last_id, s.purged_through, (SELECT count(*) FROM notify_recipient r "
    "WHERE r.user_key = s.key AND r.read_at IS NULL) "
    "FROM (SELECT 1) o LEFT JOIN notify_user_sequence s ON s.user_id = %s"
)
_EXISTING = f"SELECT seq FROM notify_recipient WHERE user_key = {_KEY} AND seq = ANY(%s)"  # noqa: S608
_MARK = (
    f"UPDATE notify_recipient SET read_at = %s WHERE user_key = {_KEY} "  # noqa: S608
    "AND read_at IS NULL {seqs} RETURNING seq"
)
# A purge's CTEs after ``top`` (user_key, seq): each user's purged_through
# raised to ``top.seq``. The counter rows are locked first, all of them, in
# user_id order: the order a publish locks its users' rows in (pg_writes,
# ``ORDER BY u``). Locked in the join's order instead, a purge and a publish
# to two of the same users could each hold the row the other waited for,
# and PostgreSQL cancelled one of them: publishes failed while a day was
# purged (docs/scaling.md, "Publishing while a day is purged"). The sort
# takes all of ``top`` before the first lock, so publishes wait only for the
# update itself, never for the aggregate.
RAISE_PURGED_THROUGH = (
    "locked AS MATERIALIZED (SELECT u.key, top.seq FROM notify_user_sequence u "
    "JOIN top ON u.key = top.user_key WHERE u.purged_through < top.seq "
    "ORDER BY u.user_id FOR UPDATE OF u), "
    "moved AS (UPDATE notify_user_sequence u SET purged_through = locked.seq FROM locked "
    "WHERE u.key = locked.key AND u.purged_through < locked.seq) "
)
# purged_through raised for given users (partitions._record_purged's batches).
_RAISE = (
    "WITH top AS (SELECT * FROM unnest(%s::integer[], %s::bigint[]) AS t(user_key, seq)), "  # noqa: S608
    + RAISE_PURGED_THROUGH
    + "SELECT 1"
)


def raise_purged_through(keys: Sequence[int], seqs: Sequence[int]) -> None:
    """Each of ``keys``' purged_through raised to its ``seqs`` (never lowered),
    in a transaction of its own."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_RAISE, [list(keys), list(seqs)])


# One batch of the rows of days before the cutoff that no dropped day
# partition held (the default partition's): each user's highest id goes
# into purged_through in the same statement as the delete.
_PURGE = (
    "WITH gone AS (DELETE FROM notify_recipient r WHERE (r.user_key, r.seq) IN ("  # noqa: S608 - constant texts
    "SELECT user_key, seq FROM notify_recipient WHERE day < %s LIMIT %s) AND r.day < %s "
    "RETURNING r.user_key, r.seq), "
    "top AS (SELECT user_key, max(seq) AS seq, count(*) AS n FROM gone GROUP BY user_key), "
    + RAISE_PURGED_THROUGH
    + "SELECT coalesce(sum(n), 0) FROM top"
)
_LATEST = (
    "SELECT seq, event_ref, day, read_at FROM notify_recipient "  # noqa: S608
    f"WHERE user_key = {_KEY} ORDER BY seq DESC LIMIT %s"
)


def unread_count(user_id: str) -> int:
    return int(_one(UNREAD_COUNT, [user_id]))


def existing(user_id: str, seqs: Sequence[int]) -> set[int]:
    """Which of ``seqs`` the user has."""
    with connection.cursor() as cursor:
        cursor.execute(_EXISTING, [user_id, list(seqs)])
        return {row[0] for row in cursor.fetchall()}


def mark_read(user_id: str, seqs: Sequence[int] | None, when: datetime) -> list[int]:
    """Mark the user's unread rows (of ``seqs``; None: all) read at
    ``when``, in one statement (the rows' locks until commit); returns the
    ids that changed, sorted."""
    where = ""
    params: list[Any] = [when, user_id]
    if seqs is not None:
        where = "AND seq = ANY(%s)"
        params.append(list(seqs))
    with connection.cursor() as cursor:
        cursor.execute(_MARK.format(seqs=where), params)
        return sorted(row[0] for row in cursor.fetchall())


def purge_batch(*, before: date, batch_size: int) -> int:
    """Delete up to ``batch_size`` rows of days before ``before``, recording
    each user's highest such id; returns how many went."""
    return int(_one(_PURGE, [before, batch_size, before]))


def latest(user_id: str, limit: int) -> list[tuple[int, int, date, datetime | None]]:
    """The user's newest rows: (seq, event ref, day, read_at), newest first."""
    with connection.cursor() as cursor:
        cursor.execute(_LATEST, [user_id, limit])
        return [(row[0], row[1], row[2], row[3]) for row in cursor.fetchall()]


def _one(sql: str, params: list[Any]) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return row[0] if row else 0
