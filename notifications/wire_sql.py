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

The ``LATERAL`` subquery (``LIMIT 1`` keeps the planner from flattening it
into a join) is a nested loop whose inner ``Append`` over the event
partitions is pruned at run time to the row's ``day`` (its event's UTC
day, bounds written as UTC midnights so that the session's time zone does
not matter): each row costs one index probe in one partition, where a
plain join had the planner price every day's partition per row and pick a
scan of all events.
"""

from __future__ import annotations

from typing import Any

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
    """The SQL for ``wire_page`` (only fixed text from the selectors goes
    in; values are parameters)."""
    return _COLUMNS.format(
        order="DESC" if descending else "ASC", where=where, user="%s", limit="%s"
    )


def correlated(*, user: str, where: str, limit: str) -> str:
    """The ascending page as one JSON array, as a subquery of a statement
    that names the user, the conditions and the limit in its own columns
    (``user``, ``limit``: fixed SQL expressions, no values)."""
    return _AGGREGATE.format(order="ASC", where=where, user=user, limit=limit)


def wire_page(
    *, user_id: str, where: str, params: list[Any], descending: bool, limit: int
) -> list[NotificationDict]:
    """The user's rows matching ``where`` (fixed SQL conditions on ``seq``
    and ``read_at`` with ``%s`` placeholders, ``AND``-prefixed; values in
    ``params``), ordered by id, at most ``limit``, as wire dicts."""
    with connection.cursor() as cursor:
        cursor.execute(statement(where=where, descending=descending), [user_id, *params, limit])
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
