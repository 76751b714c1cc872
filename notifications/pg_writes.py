"""PostgreSQL: the publish transaction's writes as SQL of their own.

Each statement has one text for any number of rows (``unnest`` of arrays, each
array one parameter; the small groups' one statement reads JSON texts with
``json_to_recordset`` instead, which psycopg binds as plain strings) and goes
through a psycopg cursor that binds its parameters on the server: no
per-value quoting into the query text, which Django's client-side binding did
for every value of every group (8 % of a process's GIL time at 500 POSTs/s,
docs/performance.md). ``prepare=False`` keeps the statements unnamed, so they
work through PgBouncer in transaction mode. Up to ``COMBINED_MAX_ROWS``
recipients, the counters, the event rows and their recipients' rows are one
statement, one round trip; larger groups allocate, insert their events, and
send their rows by ``COPY``.

Recipient rows have the compact layout (notifications/recipient_layout.py):
each carries the user key the counter upsert returns, and the UTC day of
its event's ``created_at``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC
from typing import Any

import orjson
import psycopg
from django.db import connection, connections

from notifications import db_loop

# A new user's row takes the next user key (notifications/user_keys.py);
# ``coalesce`` is lazy, so an existing user's upsert reads its key and draws
# nothing from the sequence (a column default would be drawn for every row
# proposed, conflicting or not: the 4-byte keys would run out). A row still
# without a key (while migration 0005 backfills) gets one here too.
_ALLOCATE = (
    "INSERT INTO notify_user_sequence AS s (user_id, last_id, purged_through, key) "
    "SELECT u, c, 0, coalesce((SELECT k.key FROM notify_user_sequence k WHERE k.user_id = u), "
    "nextval('notify_user_key_seq')) "
    "FROM unnest(%s::text[], %s::bigint[]) AS t(u, c) ORDER BY u "
    "ON CONFLICT (user_id) DO UPDATE "
    "SET last_id = s.last_id + EXCLUDED.last_id, key = coalesce(s.key, EXCLUDED.key) "
    "RETURNING user_id, last_id, key"
)
# A row's partition key: the UTC day of its event's created_at.
_DAY = "(e.created_at AT TIME ZONE 'UTC')::date"

# The events, then one row per recipient joined to its event's new id by the
# public event id (unique per publish). A data-modifying CTE runs whole even
# when no recipient row refers to it.
_INSERT_EVENTS = (
    "INSERT INTO notify_event (event_id, type, title, body, data, source, created_at) "
    "SELECT i, t, ti, b, d::jsonb, s, c "
    "FROM unnest(%(ids)s::uuid[], %(types)s::text[], %(titles)s::text[], %(bodies)s::text[], "
    "%(data)s::text[], %(sources)s::text[], %(created)s::timestamptz[]) "
    "AS x(i, t, ti, b, d, s, c) "
    "RETURNING id, event_id"
)
# The whole group in one statement: the counters (locked in user order, as
# _ALLOCATE does), the events, and the recipients' rows, each row's seq its
# user's new last id less the rows of that user after it in the group
# (``k``). Data-modifying CTEs run to completion whether or not the primary
# query reads them. The group comes as three JSON documents (one text
# parameter each, built by orjson) rather than twelve arrays: psycopg adapts
# each list parameter in Python (its element type found, an array dumper
# made, every element quoted), which cost the writer thread more than the
# statement's round trip (docs/performance.md, "fourth round").
_PUBLISH = (
    "WITH a AS ("  # noqa: S608 - constant texts only
    "INSERT INTO notify_user_sequence AS s (user_id, last_id, purged_through, key) "
    "SELECT u, c, 0, coalesce((SELECT k.key FROM notify_user_sequence k WHERE k.user_id = u), "
    "nextval('notify_user_key_seq')) "
    "FROM json_to_recordset(%(counters)s::json) AS t(u text, c bigint) ORDER BY u "
    "ON CONFLICT (user_id) DO UPDATE "
    "SET last_id = s.last_id + EXCLUDED.last_id, key = coalesce(s.key, EXCLUDED.key) "
    "RETURNING user_id, last_id, key"
    "), e AS ("
    "INSERT INTO notify_event (event_id, type, title, body, data, source, created_at) "
    "SELECT i, t, ti, b, d, s, c FROM json_to_recordset(%(events)s::json) "
    "AS x(i uuid, t text, ti text, b text, d jsonb, s text, c timestamptz) "
    "RETURNING id, event_id, created_at"
    "), r AS ("
    "INSERT INTO notify_recipient (user_key, day, seq, event_ref) "
    "SELECT a.key, " + _DAY + ", a.last_id - r.k, e.id "
    "FROM json_to_recordset(%(rows)s::json) AS r(u text, k bigint, ev uuid) "
    "JOIN a ON a.user_id = r.u JOIN e ON e.event_id = r.ev"
    ") SELECT user_id, last_id, key FROM a"
)
_COPY_ROWS = "COPY notify_recipient (user_key, day, seq, event_ref) FROM STDIN"

# Above this many recipient rows in a group, the rows go by COPY after the
# events' statement: the server ingests COPY into the partitioned table in
# batches, where INSERT ... SELECT routes row by row (batch of 100 per
# publish: 11,894 deliveries/s with COPY, 7,681 with the one statement).
COMBINED_MAX_ROWS = 64


@contextmanager
def _cursor() -> Iterator[psycopg.Cursor[Any]]:
    """A server-side-binding cursor on Django's connection (in its transaction),
    with Django's error classes."""
    connection.ensure_connection()
    raw = connection.connection
    assert isinstance(raw, psycopg.Connection)
    with connection.wrap_database_errors, psycopg.Cursor(raw) as cursor:
        yield cursor


def allocate_and_copy(
    users: Sequence[str],
    counts: Sequence[int],
    publications: Sequence[tuple[Mapping[str, Any], Sequence[tuple[str, int]]]],
) -> list[tuple[str, int]]:
    """``allocate_and_insert`` for a group of any size, in three statements:
    the counters (each user's new last id and key), the events, then the
    recipients' rows by ``COPY``."""
    with _cursor() as cursor:
        cursor.execute(_ALLOCATE, [list(users), list(counts)], prepare=False)
        allocated = {user: (last, key) for user, last, key in cursor.fetchall()}
        params = _publication_params(publications)
        cursor.execute(_INSERT_EVENTS, params, prepare=False)
        ref_of = {event_id: ref for ref, event_id in cursor.fetchall()}
        with cursor.copy(_COPY_ROWS) as copy:
            for shared, rows in publications:
                ref = ref_of[shared["event_id"]]
                day = shared["created_at"].astimezone(UTC).date()
                for user, back in rows:
                    last, key = allocated[user]
                    copy.write_row((key, day, last - back, ref))
    return [(user, last) for user, (last, _key) in allocated.items()]


def allocate_and_insert(
    users: Sequence[str],
    counts: Sequence[int],
    publications: Sequence[tuple[Mapping[str, Any], Sequence[tuple[str, int]]]],
) -> list[tuple[str, int]]:
    """The group's writes in one statement: ``users`` (sorted, distinct),
    their ``counts`` (rows per user), and ``publications``: each event's
    shared values and its rows as (user, rows of that user after it in the
    group), its seq being the user's new last id less that. (user, new last
    id) per user.

    With the transaction's ``BEGIN`` and ``COMMIT``, three round trips per
    group where the counters and the rows as statements of their own took
    four; one for a plain group, which sends it alone in autocommit
    (publishing._publish_plain). Not in psycopg's pipeline mode, which
    would send the ``BEGIN`` with it: psycopg 3.3 waits for a pipeline's
    results by polling for read or write, and a socket is always writable,
    so the writer thread spun through the round trip (measured:
    docs/performance.md, "Cost per notification").
    """
    with _cursor() as cursor:
        cursor.execute(_PUBLISH, _publish_params(users, counts, publications), prepare=False)
        return [(user, last) for user, last, _key in cursor.fetchall()]


async def allocate_and_insert_on_loop(
    conn: db_loop.KeptConnection,
    users: Sequence[str],
    counts: Sequence[int],
    publications: Sequence[tuple[Mapping[str, Any], Sequence[tuple[str, int]]]],
) -> list[tuple[str, int]]:
    """``allocate_and_insert`` on the event loop's own connection ``conn``
    (notifications/db_loop.py), in autocommit: the statement alone, committed
    by itself. Raises Django's database errors, as the thread's does."""
    with _django_errors():
        rows = await conn.fetch_all(_PUBLISH, _publish_params(users, counts, publications))
    return [(user, last) for user, last, _key in rows]


@contextmanager
def _django_errors() -> Iterator[None]:
    """psycopg's errors as Django's (``OperationalError`` and the like), for
    statements sent outside Django's connections."""
    global _errors_wrapper
    if _errors_wrapper is None:
        _errors_wrapper = connections.create_connection("default")
    with _errors_wrapper.wrap_database_errors:
        yield


_errors_wrapper: Any = None


def _publish_params(
    users: Sequence[str],
    counts: Sequence[int],
    publications: Sequence[tuple[Mapping[str, Any], Sequence[tuple[str, int]]]],
) -> dict[str, str]:
    return {
        "counters": _json(
            [{"u": user, "c": count} for user, count in zip(users, counts, strict=True)]
        ),
        "events": _json(
            [
                {
                    "i": shared["event_id"],
                    "t": shared["type"],
                    "ti": shared["title"],
                    "b": shared["body"],
                    "d": shared["data"],
                    "s": shared["source"],
                    "c": shared["created_at"],
                }
                for shared, _rows in publications
            ]
        ),
        "rows": _json(
            [
                {"u": user, "k": back, "ev": shared["event_id"]}
                for shared, rows in publications
                for user, back in rows
            ]
        ),
    }


def _json(value: Any) -> str:
    """A parameter's JSON text: UUIDs and aware datetimes as PostgreSQL reads
    them (``uuid``, ``timestamptz`` to the microsecond), text exactly as given."""
    return orjson.dumps(value).decode()


def _publication_params(
    publications: Sequence[tuple[Mapping[str, Any], Sequence[tuple[str, int]]]],
) -> dict[str, list[Any]]:
    users: list[str] = []
    seqs: list[int] = []
    refs: list[uuid.UUID] = []
    for shared, rows in publications:
        event_id = shared["event_id"]
        for user, seq in rows:
            users.append(user)
            seqs.append(seq)
            refs.append(event_id)
    return {
        "ids": [shared["event_id"] for shared, _rows in publications],
        "types": [shared["type"] for shared, _rows in publications],
        "titles": [shared["title"] for shared, _rows in publications],
        "bodies": [shared["body"] for shared, _rows in publications],
        "data": [orjson.dumps(shared["data"]).decode() for shared, _rows in publications],
        "sources": [shared["source"] for shared, _rows in publications],
        "created": [shared["created_at"] for shared, _rows in publications],
        "users": users,
        "seqs": seqs,
        "refs": refs,
    }
