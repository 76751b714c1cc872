"""PostgreSQL: stored notifications read in one statement per page.

The user's rows (the ``(user_key, seq)`` index, in id order; the user's key
from ``notify_user_sequence``), each row's event by ``(id, created_at)`` in
a ``LATERAL`` subquery, the timestamps already in wire form (``to_char``),
``data`` as its JSON text. ``wire_page`` builds the wire dicts from these
plain columns (orjson parses each ``data``): at 20 M rows that costs the
process less than the server's ``json_agg(json_build_object(...))`` of the
same page cost PostgreSQL (docs/scaling.md, "The replay at 20 M rows"),
and the server is the part every process shares. The openings' batch
statement (notifications/openings.py) answers many users in one row each,
so it keeps the aggregate (``correlated``).

``wire_page`` runs the statement through ``notify_wire_page``, a PL/pgSQL
function of migration 0007 holding the same text: PL/pgSQL keeps each
statement's plan per server connection, which saves the 1-1.7 ms of
planning (17-40 partitions of each table) that every execution of the
inline statement costs, as Django binds client-side and prepares nothing;
it holds behind PgBouncer in transaction mode, which has no protocol-level
prepared statements. The plan it keeps is the generic one (a ``Merge
Append`` of the per-day indexes; docs/scaling.md). ``statement`` is the
inline text, for the plan benchmarks and the tests that compare the two.

The ``LATERAL`` subquery (``LIMIT 1`` keeps the planner from flattening it
into a join) is a nested loop whose inner ``Append`` over the event
partitions is pruned at run time to the row's ``day`` (its event's UTC
day, bounds written as UTC midnights so that the session's time zone does
not matter): each row costs one index probe in one partition, where a
plain join had the planner price every day's partition per row and pick a
scan of all events.
"""

from __future__ import annotations

import orjson
from django.db import connection

from notifications.rendering import NotificationDict

# The wire timestamp (rendering.timestamp): UTC, microseconds, "Z".
_TS = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

# The page's rows and their events ({order}, {where}, {user}, {limit}: fixed text).
_FROM = (
    "FROM (SELECT seq, event_ref, day, read_at FROM notify_recipient "
    "WHERE user_key = (SELECT key FROM notify_user_sequence WHERE user_id = {user}) "
    "{where} ORDER BY seq {order} LIMIT {limit}) r "
    "CROSS JOIN LATERAL (SELECT type, title, body, data, source, created_at "
    "FROM notify_event e WHERE e.id = r.event_ref "
    "AND e.created_at >= (r.day::timestamp AT TIME ZONE 'UTC') "
    "AND e.created_at < ((r.day + 1)::timestamp AT TIME ZONE 'UTC') LIMIT 1) e"
)
# One row per notification, the wire fields in wire order.
_COLUMNS = (
    "SELECT r.seq, e.type, e.title, e.body, e.data::text, e.source, "
    f"{_TS.format('e.created_at')}, {_TS.format('r.read_at')} " + _FROM + " ORDER BY r.seq {order}"
)
# The page as one JSON array (the openings' batch: one row per user).
_AGGREGATE = (
    "SELECT coalesce(json_agg(json_build_object("
    "'id', r.seq::text, 'type', e.type, 'title', e.title, 'body', e.body, "
    "'data', e.data, 'source', e.source, "
    f"'created_at', {_TS.format('e.created_at')}, 'read_at', {_TS.format('r.read_at')}"
    ") ORDER BY r.seq {order}), '[]')::text " + _FROM
)


def statement(*, where: str, descending: bool) -> str:
    """The statement ``notify_wire_page`` runs, inline (only fixed text
    goes in; values are parameters): bench.storage_plan's EXPLAIN and
    tests/notifications/test_wire_function.py."""
    return _COLUMNS.format(
        order="DESC" if descending else "ASC", where=where, user="%s", limit="%s"
    )


def correlated(*, user: str, where: str, limit: str) -> str:
    """The ascending page as one JSON array, as a subquery of a statement
    that names the user, the conditions and the limit in its own columns
    (``user``, ``limit``: fixed SQL expressions, no values)."""
    return _AGGREGATE.format(order="ASC", where=where, user=user, limit=limit)


# A replay or page bound that excludes nothing (ids are positive bigints).
_NO_BOUND = 2**63 - 1
# The migration's function (0007): the statements above, planned once per
# server connection (the plan kept by PL/pgSQL, which PgBouncer's
# transaction mode does not disturb), in place of planning every execution.
_CALL = (
    "SELECT * FROM notify_wire_page(%s::text, %s::bigint, %s::bigint, %s::bigint, "
    "%s::boolean, %s::boolean, %s::integer)"
)


def wire_page(
    *,
    user_id: str,
    descending: bool,
    limit: int,
    after: int = 0,
    up_to: int | None = None,
    before: int | None = None,
    unread: bool = False,
) -> list[NotificationDict]:
    """The user's rows, as wire dicts: ascending, ``after < id <= up_to``;
    descending, ``id < before`` (``unread``: unread ones only); at most
    ``limit``."""
    upper = _NO_BOUND if up_to is None else up_to
    lower = _NO_BOUND if before is None else before
    with connection.cursor() as cursor:
        cursor.execute(_CALL, [user_id, after, upper, lower, unread, descending, limit])
        rows = cursor.fetchall()
    loads = orjson.loads
    # The keys in rendering.wire_fields' order (clients may print the JSON as given).
    return [
        {
            "id": str(seq),
            "type": type_,
            "title": title,
            "body": body,
            "data": loads(data),
            "source": source,
            "created_at": created_at,
            "read_at": read_at,
        }
        for seq, type_, title, body, data, source, created_at, read_at in rows
    ]
